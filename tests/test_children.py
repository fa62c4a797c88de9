"""Children started by the kit die with their owner, however the owner ends."""

import os
import signal
import subprocess
import sys

import psutil

from pgqueue import children
from pgqueue.wait import until

# An owner that starts one long-sleeping child, prints its pid, then waits to be told to go.
# The child says "running" once it has replaced the trampoline, so a test never kills the
# owner while the child is still starting (that case is refused by the trampoline itself).
OWNER = (
    "import sys; from pgqueue import children; "
    "child = children.spawn([sys.executable, '-c', "
    "'import time; print(\"running\", flush=True); time.sleep(600)']); "
    "print(child.pid, flush=True); sys.stdin.read()"
)


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _owner_and_child():
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    child = int(owner.stdout.readline())
    assert owner.stdout.readline().strip() == "running"
    assert psutil.Process(child).ppid() == owner.pid
    return owner, child


def test_child_is_stopped_when_its_owner_exits_normally():
    owner, child = _owner_and_child()
    owner.stdin.close()
    assert owner.wait(20) == 0
    until(lambda: _gone(child), 10, "the child exiting with its owner")


def test_child_is_stopped_when_its_owner_is_sigkilled():
    owner, child = _owner_and_child()
    os.kill(owner.pid, signal.SIGKILL)
    owner.wait(10)
    until(lambda: _gone(child), 10, "the child exiting after its owner was killed")


def test_child_runs_in_its_own_session_and_stop_reaps_it():
    proc = children.spawn([sys.executable, "-c", "import time; time.sleep(600)"])
    assert os.getsid(proc.pid) == proc.pid != os.getsid(0)
    assert proc in children.running()
    assert children.stop(proc, timeout=5) == -signal.SIGTERM
    assert proc not in children.running()
    assert _gone(proc.pid)
