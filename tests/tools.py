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
