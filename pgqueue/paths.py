"""Where the kit's files live: the repository's sql/ and notebooks/, and the embedded server's home."""

import contextlib
import os
from pathlib import Path

from pgqueue.errors import PgQueueError

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
SQL_DIR = REPO_ROOT / "sql"
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"


def home() -> Path:
    """The folder that holds the embedded server's data and bookkeeping (`PGQUEUE_HOME` moves it)."""
    chosen = os.environ.get("PGQUEUE_HOME", "").strip()
    return Path(chosen).expanduser().resolve() if chosen else REPO_ROOT / ".pgqueue"


def sql_dir() -> Path:
    """The repository's sql/ folder, or a one-line error when the package was installed without it."""
    if not SQL_DIR.is_dir():
        raise PgQueueError(
            f"the kit's SQL is not beside the package (no folder {str(SQL_DIR)!r}): pgqueue runs from "
            "its repository; in a clone, install it with `pip install -r requirements.txt` "
            "(an editable install), not `pip install .`"
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
