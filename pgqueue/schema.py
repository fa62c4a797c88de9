"""Schema steps: `sql/<design>/NN_name.sql` files, listed and applied in order, each at most once."""

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

from pgqueue import queries
from pgqueue.errors import PgQueueError
from pgqueue.queries import SqlText

_STEP_FILE = re.compile(r"^(\d{2})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Step:
    """One numbered SQL file of a design."""

    number: int
    name: str
    path: Path

    @property
    def key(self) -> str:
        """The step's file name without `.sql`, e.g. '03_heartbeats'."""
        return self.path.stem

    @property
    def sql(self) -> SqlText:
        """The step's SQL, displayed as a highlighted block in a notebook."""
        return SqlText(self.path.read_text(encoding="utf-8"), f"sql/{self.path.parent.name}/{self.path.name}")

    @property
    def checksum(self) -> str:
        """A hash of the file, to tell an edited step from the one a database ran."""
        return hashlib.sha256(self.path.read_bytes()).hexdigest()[:16]

    def _repr_markdown_(self) -> str:
        return self.sql._repr_markdown_()


def steps(folder: Path) -> list[Step]:
    """The steps in `folder`, ordered by number; a malformed or duplicate number is an error."""
    if not folder.is_dir():
        raise PgQueueError(f"no schema folder {str(folder)!r}")
    found: dict[int, Step] = {}
    for path in sorted(folder.glob("*.sql")):
        match = _STEP_FILE.match(path.name)
        if not match:
            raise PgQueueError(f"{path.name!r} in {folder} is not named NN_name.sql")
        number = int(match.group(1))
        if number in found:
            raise PgQueueError(
                f"two steps numbered {number:02d} in {folder}: {found[number].path.name!r} and {path.name!r}"
            )
        found[number] = Step(number, match.group(2), path)
    return [found[n] for n in sorted(found)]


def find(folder: Path, which: int | str) -> Step:
    """One step by number (3 or '03'), name ('heartbeats') or key ('03_heartbeats')."""
    all_steps = steps(folder)
    for step in all_steps:
        if which in (step.number, step.name, step.key) or (
            isinstance(which, str) and which.isdigit() and int(which) == step.number
        ):
            return step
    known = ", ".join(s.key for s in all_steps) or "none"
    raise PgQueueError(f"no step {which!r} in {folder} (steps: {known})")


def applied(conn: psycopg.Connection) -> dict[str, str]:
    """The steps this database has run, key -> checksum."""
    q = queries.load("kit/queries.sql")
    conn.execute(q["create_applied_steps"])
    return {row[0]: row[1] for row in conn.execute(q["applied_steps"])}


def apply(conn: psycopg.Connection, step: Step) -> bool:
    """Run `step` in one transaction unless the database has run it; True if it ran now.

    A step whose file changed since it ran is refused: reset the lab to run the new version.
    """
    q = queries.load("kit/queries.sql")
    done = applied(conn)
    if step.key in done:
        if done[step.key] != step.checksum:
            raise PgQueueError(
                f"step {step.key!r} changed since this database ran it; reset the lab to rerun it"
            )
        return False
    with conn.transaction():
        conn.execute(step.sql)
        conn.execute(q["record_step"], {"step": step.key, "checksum": step.checksum})
    return True


def apply_upto(conn: psycopg.Connection, folder: Path, upto: int | str | None = None) -> list[Step]:
    """Run every step of `folder` up to and including `upto` (all when None); the ones run now."""
    last = find(folder, upto).number if upto is not None else None
    ran = []
    for step in steps(folder):
        if last is not None and step.number > last:
            break
        if apply(conn, step):
            ran.append(step)
    return ran
