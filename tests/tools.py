"""Tools pip cannot install: a test that needs a missing one skips; CI fails it."""

import os

import pytest

REQUIRE_ENV = "PGQUEUE_REQUIRE_TOOLS"  # CI sets it to 1, so that no test it relies on was skipped


def require(tool: str, present: bool, install: str) -> None:
    """Skip the test if `tool` is missing, saying how to install it; fail it under PGQUEUE_REQUIRE_TOOLS=1."""
    value = os.environ.get(REQUIRE_ENV, "")
    if value not in ("", "0", "1"):
        pytest.fail(f"{REQUIRE_ENV} is 0 or 1, got {value!r}")
    if present:
        return
    said = f"{tool} is not installed: {install}"
    if value == "1":
        pytest.fail(f"{said} ({REQUIRE_ENV}=1: every tool must be here)")
    pytest.skip(said)


CHROMIUM = "/usr/bin/chromium"  # Debian's: Playwright drives it as it is, no browser download


def require_browser() -> str:
    """Playwright and Debian's Chromium, or the test skips (fails under CI) saying how to get them."""
    import importlib.util

    require(
        "Playwright (the Python package)",
        importlib.util.find_spec("playwright") is not None,
        "pip install -r requirements-dev.txt",
    )
    # an executable file, not merely a path: a tool hidden by an empty file over it counts as missing
    require(
        f"Chromium ({CHROMIUM})",
        os.access(CHROMIUM, os.X_OK) and os.path.getsize(CHROMIUM) > 0,
        "apt-get install --no-install-recommends chromium",
    )
    return CHROMIUM
