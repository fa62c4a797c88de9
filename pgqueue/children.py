"""Child processes that never outlive the process that started them.

Each child runs in its own session (a Ctrl-C meant for its owner does not reach it; stopping it
stops its own children too), asks the kernel to send it SIGTERM when its owner dies (Linux's
parent-death signal, which works even when the owner is SIGKILLed), and is stopped and reaped
when its owner exits normally, so no zombie is left for the owner's shutdown to wait on.
"""

import atexit
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence

_OWNER_ENV = "PGQUEUE_OWNER_PID"
_PR_SET_PDEATHSIG = 1
_children: list[subprocess.Popen] = []


def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike | None = None,
    stdin=subprocess.DEVNULL,
    stdout=None,
    stderr=None,
) -> subprocess.Popen:
    """Start `argv` as a child that dies with this process (call it from a long-lived thread).

    Linux ties the parent-death signal to the thread that started the child: a child started
    from a short-lived thread would be signalled when that thread ends.
    """
    if not argv:
        raise ValueError("spawn needs a command, got an empty argv")
    child_env = dict(os.environ if env is None else env)
    child_env[_OWNER_ENV] = str(os.getpid())
    proc = subprocess.Popen(
        [sys.executable, "-m", "pgqueue.children", *argv],
        env=child_env,
        cwd=cwd,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        start_new_session=True,
    )
    if not _children:
        atexit.register(stop_all)
    _children.append(proc)
    return proc


def stop(proc: subprocess.Popen, timeout: float = 5.0) -> int:
    """Stop a child and everything in its session: SIGTERM, then SIGKILL after `timeout`."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout)
            break
        except subprocess.TimeoutExpired:
            continue
    code = proc.wait()
    with contextlib.suppress(ValueError):
        _children.remove(proc)
    return code


def running() -> list[subprocess.Popen]:
    """Children started here that have not exited (exited ones are reaped on the way)."""
    return [proc for proc in _children if proc.poll() is None]


def stop_all(timeout: float = 5.0) -> None:
    """Stop every child this process started."""
    for proc in list(_children):
        stop(proc, timeout)


def _die_with_owner() -> None:
    """In the child, before exec: be sent SIGTERM when the owner dies."""
    owner = int(os.environ.pop(_OWNER_ENV, "0"))
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if owner and os.getppid() != owner:
        sys.exit(f"pgqueue: the process that started {sys.argv[1:]!r} is already gone")


if __name__ == "__main__":
    # The trampoline: arm the parent-death signal (it survives exec), then become the command.
    _die_with_owner()
    os.execvp(sys.argv[1], sys.argv[1:])
