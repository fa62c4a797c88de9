"""Where the kit's files live: the repository's sql/ and notebooks/, and the embedded server's home."""

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
SQL_DIR = REPO_ROOT / "sql"
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"


def home() -> Path:
    """The folder that holds the embedded server's data and bookkeeping (`PGQUEUE_HOME` moves it)."""
    chosen = os.environ.get("PGQUEUE_HOME", "").strip()
    return Path(chosen).expanduser().resolve() if chosen else REPO_ROOT / ".pgqueue"
