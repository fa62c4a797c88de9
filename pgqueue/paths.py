"""Where the kit's files live: the repository's sql/ and notebooks/, and the embedded server's home."""

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
