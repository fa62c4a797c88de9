"""Schema steps: `sql/<design>/NN_name.sql` files, listed and applied in order, each at most once.

A step may have companions: `NN_name.examples.sql` (example data, applied on request),
`NN_name.lesson.sql` (named queries its lesson shows and runs, never applied as a whole) and
`NN_name.fix.sql` (the repair its lesson teaches for a defect of the original, applied on request).
"""

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import psycopg

from pgqueue import queries
from pgqueue.errors import PgQueueError
from pgqueue.queries import SqlText

_STEP_FILE = re.compile(r"^(\d{2})_([a-z0-9_]+)\.sql$")
_COMPANION_FILE = re.compile(r"^(\d{2}_[a-z0-9_]+)\.(examples|lesson|fix)\.sql$")
_COMPANION_FIELD = {"examples": "examples", "lesson": "lesson_path", "fix": "fix_path"}


@dataclass(frozen=True)
class Step:
    """One numbered SQL file of a design."""

    number: int
    name: str
    path: Path
    examples: Path | None = None
    lesson_path: Path | None = None
    fix_path: Path | None = None

    @property
    def key(self) -> str:
        """The step's file name without `.sql`, e.g. '03_heartbeats'."""
        return self.path.stem

    @property
    def sql(self) -> SqlText:
        """The step's SQL, displayed as a highlighted block in a notebook."""
        return SqlText(self.path.read_text(encoding="utf-8"), _shown_as(self.path))

    @property
    def checksum(self) -> str:
        """A hash of the file, to tell an edited step from the one a database ran."""
        return _checksum(self.path)

    @property
    def example_sql(self) -> SqlText:
        """The step's example data, displayed as a highlighted block."""
        if self.examples is None:
            raise PgQueueError(f"step {self.key!r} has no example data")
        return SqlText(self.examples.read_text(encoding="utf-8"), _shown_as(self.examples))

    @property
    def fix_sql(self) -> SqlText:
        """The repair the step's lesson teaches, displayed as a highlighted block."""
        if self.fix_path is None:
            raise PgQueueError(f"step {self.key!r} has no {self.key}.fix.sql")
        return SqlText(self.fix_path.read_text(encoding="utf-8"), _shown_as(self.fix_path))

    @property
    def lesson(self) -> queries.Queries:
        """The named queries that the step's lesson shows and runs."""
        if self.lesson_path is None:
            raise PgQueueError(f"step {self.key!r} has no {self.key}.lesson.sql")
        return queries.Queries(self.lesson_path)

    def excerpt(self, name: str) -> SqlText:
        """The statement that creates `name` in this step, with the comment above it.

        Lessons show a long step piece by piece, each piece where it is discussed.
        """
        return excerpt(self.path, name)

    def _repr_markdown_(self) -> str:
        return self.sql._repr_markdown_()


def excerpt(path: Path, name: str) -> SqlText:
    """The first `CREATE ... name` statement of an SQL file, and the comment lines just above it."""
    lines = path.read_text(encoding="utf-8").splitlines()
    creates = re.compile(rf"^CREATE\b.*\b{re.escape(name)}\b", re.IGNORECASE)
    start = next((i for i, line in enumerate(lines) if creates.match(line)), None)
    if start is None:
        raise PgQueueError(f"{_shown_as(path)} creates nothing named {name!r}")
    first = start
    while first > 0 and lines[first - 1].startswith("--"):
        first -= 1
    end, in_body = start, False
    for end in range(start, len(lines)):
        in_body ^= lines[end].count("$$") % 2 == 1  # a $$ opens or closes a function body
        if not in_body and lines[end].rstrip().endswith(";"):
            break
    return SqlText("\n".join(lines[first : end + 1]) + "\n", f"{_shown_as(path)}: {name}")


def _shown_as(path: Path) -> str:
    return f"sql/{path.parent.name}/{path.name}"


def _checksum(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def steps(folders: Path | Sequence[Path]) -> list[Step]:
    """The steps of one folder, or of several together (e.g. shared/ then the design's own).

    Ordered by number; a malformed name or a number used twice is an error. A companion file
    in a later folder replaces one of the same name in an earlier folder, so a design can give
    a shared step its own example data.
    """
    folders = [folders] if isinstance(folders, Path) else list(folders)
    found: dict[int, Step] = {}
    companions: dict[tuple[str, str], Path] = {}
    for folder in folders:
        if not folder.is_dir():
            raise PgQueueError(f"no schema folder {str(folder)!r}")
        for path in sorted(folder.glob("*.sql")):
            companion = _COMPANION_FILE.match(path.name)
            if companion:
                companions[(companion.group(1), companion.group(2))] = path
                continue
            match = _STEP_FILE.match(path.name)
            if not match:
                raise PgQueueError(
                    f"{path.name!r} in {folder} is not named NN_name.sql (or NN_name.examples.sql, "
                    "NN_name.lesson.sql, NN_name.fix.sql)"
                )
            number = int(match.group(1))
            if number in found:
                raise PgQueueError(
                    f"two steps numbered {number:02d}: {str(found[number].path)!r} and {str(path)!r}"
                )
            found[number] = Step(number, match.group(2), path)
    by_key = {step.key: step for step in found.values()}
    for (key, kind), path in companions.items():
        if key not in by_key:
            raise PgQueueError(f"{path.name!r} in {path.parent} has no step {key}.sql")
        step = by_key[key]
        found[step.number] = by_key[key] = replace(step, **{_COMPANION_FIELD[kind]: path})
    return [found[n] for n in sorted(found)]


def find(folders: Path | Sequence[Path], which: int | str) -> Step:
    """One step by number (3 or '03'), name ('heartbeats') or key ('03_heartbeats')."""
    all_steps = steps(folders)
    for step in all_steps:
        if which in (step.number, step.name, step.key) or (
            isinstance(which, str) and which.isdigit() and int(which) == step.number
        ):
            return step
    known = ", ".join(s.key for s in all_steps) or "none"
    raise PgQueueError(f"no step {which!r} (steps: {known})")


def applied(conn: psycopg.Connection) -> dict[str, str]:
    """The steps this database has run, key -> checksum."""
    q = queries.load("kit/queries.sql")
    conn.execute(q["create_applied_steps"])
    return {row[0]: row[1] for row in conn.execute(q["applied_steps"])}


def _run(conn: psycopg.Connection, key: str, path: Path, text: str) -> bool:
    q = queries.load("kit/queries.sql")
    done = applied(conn)
    if key in done:
        if done[key] != _checksum(path):
            raise PgQueueError(f"step {key!r} changed since this database ran it; reset the lab to rerun it")
        return False
    with conn.transaction():
        conn.execute(text)
        conn.execute(q["record_step"], {"step": key, "checksum": _checksum(path)})
    return True


def apply(conn: psycopg.Connection, step: Step, *, examples: bool = False, fixes: bool = False) -> bool:
    """Run `step` (its fix and example data when asked) unless already run; True if anything ran now.

    Each runs in one transaction. A step whose file changed since it ran is refused: reset the
    lab to run the new version.
    """
    ran = _run(conn, step.key, step.path, step.sql)
    if fixes and step.fix_path is not None:
        ran = _run(conn, f"{step.key}.fix", step.fix_path, step.fix_sql) or ran
    if examples and step.examples is not None:
        ran = _run(conn, f"{step.key}.examples", step.examples, step.example_sql) or ran
    return ran


def apply_upto(
    conn: psycopg.Connection,
    folders: Path | Sequence[Path],
    upto: int | str | None = None,
    *,
    examples: bool = False,
    fixes: bool = False,
) -> list[Step]:
    """Run every step of `folder` up to and including `upto` (all when None, none when 0)."""
    return [step for step in upto_steps(folders, upto) if apply(conn, step, examples=examples, fixes=fixes)]


def upto_steps(folders: Path | Sequence[Path], upto: int | str | None = None) -> list[Step]:
    """The steps up to and including `upto` (all when None, none when 0), in order."""
    if upto == 0:
        return []
    last = find(folders, upto).number if upto is not None else None
    return [step for step in steps(folders) if last is None or step.number <= last]


def fingerprint(
    folders: Path | Sequence[Path],
    upto: int | str | None = None,
    *,
    examples: bool = False,
    fixes: bool = False,
) -> str:
    """A hash of everything a build up to `upto` runs: equal fingerprints, equal databases."""
    digest = hashlib.sha256()
    for step in upto_steps(folders, upto):
        ran = [step.path, step.fix_path if fixes else None, step.examples if examples else None]
        for path in filter(None, ran):
            digest.update(f"{path.parent.name}/{path.name}:{_checksum(path)};".encode())
    return digest.hexdigest()
