"""An embedded server's home: its files, its lock, and the leases of the processes that use it.

Every process that uses the server leaves a lease (a file named after its pid) under
`<home>/users/`; `db start` and `db url` leave a pin instead, which only `db stop` removes.
"""

import atexit
import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil

from pgqueue import paths
from pgqueue.errors import PgQueueError

PIN = "pinned"


class Layout:
    """The files of one embedded server home."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.data = home / "data"
        self.users = home / "users"
        self.lock = home / "lock"
        self.watchdog_pid = home / "watchdog.pid"
        self.watchdog_log = home / "watchdog.log"
        self.socket_record = home / "socket-dir"  # the socket's folder when it is not the data folder
        self.pin = self.users / PIN


def layout() -> Layout:
    """The layout of the current home (`PGQUEUE_HOME` or `.pgqueue/` in the repository)."""
    return Layout(paths.home())


def prepare(lay: Layout) -> None:
    """Make the home and its users/ folder, private to this user; a one-line error if it cannot."""
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
def locked(lay: Layout) -> Iterator[None]:
    """Serialise starts, stops, lease changes and the watchdog's decisions for one home."""
    try:
        handle = os.fdopen(os.open(lay.lock, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "a")
    except FileNotFoundError:
        raise HomeGone(str(lay.home)) from None
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
        yield


def _lease_alive(path: Path) -> bool:
    try:
        pid, created = int(path.name), float(path.read_text())
        proc = psutil.Process(pid)
        # a SIGKILLed kernel stays a zombie until its parent reaps it: it is gone all the same
        return abs(proc.create_time() - created) < 1.0 and proc.status() != psutil.STATUS_ZOMBIE
    except (ValueError, OSError, psutil.Error):
        return False


def live_users(lay: Layout) -> list[int]:
    """Pids holding a lease; leases of dead processes are removed on the way."""
    alive = []
    for path in lay.users.glob("[0-9]*"):
        if _lease_alive(path):
            alive.append(int(path.name))
        else:
            path.unlink(missing_ok=True)
    return sorted(alive)


_released: set[Path] = set()


def take_lease(lay: Layout) -> None:
    """Lease the server for this process, released when it exits (or found dead when it is killed)."""
    path = lay.users / str(os.getpid())
    paths.write_private(path, repr(psutil.Process().create_time()))
    if path not in _released:
        _released.add(path)
        atexit.register(_release, path)


def _release(path: Path) -> None:
    if path.parent.exists() and path.exists() and _lease_alive(path) and int(path.name) == os.getpid():
        path.unlink(missing_ok=True)


def in_use(lay: Layout) -> bool:
    """Whether the server is pinned or leased by a live process (the watchdog's test)."""
    return lay.pin.exists() or bool(live_users(lay))
