"""The setup check of lesson 00: each requirement [OK] or [FAIL], then the server the kit uses."""

import sys
from dataclasses import dataclass
from importlib import metadata

from packaging.requirements import InvalidRequirement, Requirement

from pgqueue import server
from pgqueue.errors import PgQueueError
from pgqueue.paths import REPO_ROOT

MIN_PYTHON = (3, 10)


@dataclass(frozen=True)
class Check:
    """One line of the report."""

    ok: bool
    what: str
    detail: str

    def __str__(self) -> str:
        return f"[{'OK' if self.ok else 'FAIL'}] {self.what:<18} {self.detail}"


@dataclass(frozen=True)
class Report:
    """Every check; prints one line each, `ok` when all passed."""

    checks: list[Check]

    @property
    def ok(self) -> bool:
        """Whether every check passed."""
        return all(check.ok for check in self.checks)

    @property
    def failures(self) -> list[str]:
        """The failed checks, as lines."""
        return [str(check) for check in self.checks if not check.ok]

    def __repr__(self) -> str:
        return "\n".join(map(str, self.checks))


def requirements() -> list[Requirement]:
    """The packages requirements.txt asks for on this Python (the editable kit itself excluded)."""
    found = []
    for line in (REPO_ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        try:
            req = Requirement(line)
        except InvalidRequirement as exc:
            raise PgQueueError(f"requirements.txt line {line!r} is not a requirement: {exc}") from None
        if req.marker is None or req.marker.evaluate():  # tomli is for Pythons before 3.11 only
            found.append(req)
    return found


def check_package(req: Requirement) -> Check:
    """Whether `req` is installed in a version it allows."""
    try:
        installed = metadata.version(req.name)
    except metadata.PackageNotFoundError:
        return Check(False, req.name, "not installed; run: pip install -r requirements.txt")
    if req.specifier and not req.specifier.contains(installed, prereleases=True):
        return Check(False, req.name, f"{installed} installed, but the kit needs {req.specifier}")
    return Check(True, req.name, installed)


def check_python() -> Check:
    """Whether this Python is recent enough."""
    found = ".".join(map(str, sys.version_info[:3]))
    ok = sys.version_info[:2] >= MIN_PYTHON
    wanted = ".".join(map(str, MIN_PYTHON))
    return Check(ok, "python", found if ok else f"{found}; the kit needs {wanted} or newer")


def check_server() -> Check:
    """Whether the kit's server answers, and which one it is."""
    try:
        srv = server.resolve()
        return Check(True, "postgresql", f"{server.version()} ({srv.describe()})")
    except PgQueueError as exc:
        return Check(False, "postgresql", str(exc))


def run() -> Report:
    """Check Python, every package of requirements.txt, then the server."""
    checks = [check_python()] + [check_package(req) for req in requirements()]
    return Report(checks + [check_server()])
