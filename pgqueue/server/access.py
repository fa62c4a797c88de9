"""Who may connect to the embedded server: its authentication files and the folder of its socket."""

import contextlib
import os
import pwd
import shutil
import stat
import tempfile
from pathlib import Path

from pgqueue import paths
from pgqueue.errors import PgQueueError
from pgqueue.server.account import Account, owner
from pgqueue.server.home import Layout

DB_USER = "postgres"
IDENT_MAP = "pgqueue"
SOCKET_NAME = ".s.PGSQL.5432"
# sun_path holds 108 bytes on Linux, 104 on macOS, NUL included: PostgreSQL refuses a longer path.
SOCKET_PATH_MAX = 103
# A short parent whatever TMPDIR says; the random name (mkdtemp) cannot be taken in advance.
SOCKET_PARENT = Path("/tmp")
SOCKET_PREFIX = "pgqueue-"


def _kit_user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        raise PgQueueError(
            f"your user id {os.geteuid()} has no name in the user database, which PostgreSQL's "
            "peer authentication needs; add it (e.g. to /etc/passwd), or use PGQUEUE_DSN"
        ) from None


def write_auth(lay: Layout, account: Account) -> None:
    """Rewritten at every start, so data folders from older kits that trusted everyone are fixed."""
    hba = (
        "# Written by pgqueue at every start (edits are lost). Only the unix socket, only the OS\n"
        f"# users that pg_ident.conf maps (the kit's user, root, and the server's own user, as whom\n"
        f"# lesson 13's PgBouncer runs), only as {DB_USER} or a lab's worker role; no TCP.\n"
        f"local all all peer map={IDENT_MAP}\n"
    )
    # the hardened lab's workers connect as its worker role, <database>_worker (a regular
    # expression, which pg_ident.conf takes as the PostgreSQL user since version 16). The
    # server's own system user owns the data folder already: mapping it opens nothing new.
    users = [_kit_user(), "root", *([account.pw_name] if account else [])]
    ident = "# Written by pgqueue at every start: MAPNAME SYSTEM-USERNAME PG-USERNAME\n" + "".join(
        f'{IDENT_MAP} "{name}" {role}\n'
        for name in dict.fromkeys(users)
        for role in (DB_USER, '"/^[a-z0-9_]+_worker$"')
    )
    paths.write_private(lay.data / "pg_hba.conf", hba, owner(account))
    paths.write_private(lay.data / "pg_ident.conf", ident, owner(account))


def _socket_fits(folder: Path) -> bool:
    # a comma would split unix_socket_directories, a double quote would start a quoted entry
    text = str(folder)
    return len(os.fsencode(text + "/" + SOCKET_NAME)) <= SOCKET_PATH_MAX and not {",", '"'} & set(text)


def forget_socket_dir(lay: Layout, account: Account) -> None:
    """Remove the socket folder a stopped (or crashed) server used outside the data folder."""
    try:
        recorded = Path(lay.socket_record.read_text().strip())
    except (OSError, ValueError):
        return
    with contextlib.suppress(OSError):
        info = os.lstat(recorded)
        server_uid = os.geteuid() if account is None else account.pw_uid
        ours = (
            stat.S_ISDIR(info.st_mode)
            and info.st_uid == server_uid
            and recorded.parent == SOCKET_PARENT
            and recorded.name.startswith(SOCKET_PREFIX)
        )
        if ours:  # a folder another user made under that name later is left alone
            shutil.rmtree(recorded)
    lay.socket_record.unlink(missing_ok=True)


def socket_dir(lay: Layout, account: Account) -> Path:
    """The data folder when the socket's path fits there; else a fresh private folder in /tmp."""
    forget_socket_dir(lay, account)
    if _socket_fits(lay.data):
        return lay.data
    folder = Path(tempfile.mkdtemp(prefix=SOCKET_PREFIX, dir=SOCKET_PARENT))  # 0700, random name
    if account is not None:
        os.chown(folder, account.pw_uid, account.pw_gid)
    paths.write_private(lay.socket_record, f"{folder}\n")
    return folder
