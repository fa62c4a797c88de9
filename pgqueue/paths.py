"""Where the kit's files live: the repository's sql/ and notebooks/, and the embedded server's home."""

import contextlib
import os
from pathlib import Path

from pgqueue.errors import PgQueueError

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
# A built wheel carries the SQL inside the package (pyproject.toml maps sql/ to pgqueue/sql);
# in a clone, and an editable install of one, it is the repository's own sql/.
BUNDLED_SQL_DIR = PACKAGE_DIR / "sql"
SQL_DIR = BUNDLED_SQL_DIR if BUNDLED_SQL_DIR.is_dir() else REPO_ROOT / "sql"
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"


def home() -> Path:
    """The folder that holds the embedded server's data and bookkeeping (`PGQUEUE_HOME` moves it)."""
    chosen = os.environ.get("PGQUEUE_HOME", "").strip()
    return Path(chosen).expanduser().resolve() if chosen else REPO_ROOT / ".pgqueue"


def sql_dir() -> Path:
    """The kit's SQL (the repository's sql/, or the copy a wheel carries), or a one-line error."""
    if not SQL_DIR.is_dir():
        raise PgQueueError(
            f"the kit's SQL is missing (no folder {str(SQL_DIR)!r}): this copy of pgqueue was "
            "installed without it; install from a clone (`pip install -r requirements.txt`) or "
            "from a wheel built by `pip wheel .`, which carries it"
        )
    return SQL_DIR


def private_folder(folder: Path) -> Path:
    """Make `folder` and its missing parents, 0700 each; folders that exist keep their mode."""
    missing = []
    for path in (folder, *folder.parents):
        if path.exists():
            break
        missing.append(path)
    for path in reversed(missing):
        # mkdir(parents=True) would make the parents 0755 (mode applies to the last one only)
        with contextlib.suppress(FileExistsError):  # another thread or process made it first
            path.mkdir(mode=0o700)
    return folder


def write_private(path: Path, text: str, owner: tuple[int, int] | None = None) -> None:
    """Write `text` to `path` as a file only its owner reads (0600), never through a symlink."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as handle:
        os.fchmod(fd, 0o600)  # a file an older kit wrote 0644 is tightened too
        if owner is not None:
            os.fchown(handle.fileno(), *owner)
        handle.write(text)
