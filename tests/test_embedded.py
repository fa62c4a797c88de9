"""The embedded server's lifecycle: shared through leases, stopped after its last user, even a killed one."""

import os
import signal
import subprocess
import sys

import psutil

from pgqueue import embedded, server
from pgqueue.wait import until
from tests.conftest import processes_of, run_cli

# A kit user that connects and then waits for stdin to close (or to be killed).
HOLDER = (
    "import sys; from pgqueue import server; conn = server.connect(); "
    "print(conn.info.backend_pid, flush=True); sys.stdin.read()"
)
# Long enough for the watchdog's grace and a few of its rounds on a loaded machine.
STOP_DEADLINE = embedded.GRACE_SECONDS + 10


def _holder() -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip().isdigit()
    return proc


def _running() -> bool:
    return embedded.status().running


def test_first_use_starts_the_server_and_a_watchdog(own_home):
    assert not _running()
    server.resolve()
    state = embedded.status()
    assert state.running and state.watchdog_pid
    assert os.getpid() in [pid for pid, _ in state.users]
    assert state.data_version == state.binary_version.split(".")[0]


def test_server_stops_after_its_last_user_exits(own_home):
    holder = _holder()
    assert _running()
    holder.stdin.close()
    holder.wait(10)
    until(lambda: not _running(), STOP_DEADLINE, "the server stopping after its last user")
    until(lambda: not processes_of(own_home.home), 5, "postgres and watchdog exiting")


def test_server_stops_after_its_last_user_is_sigkilled(own_home):
    holder = _holder()
    os.kill(holder.pid, signal.SIGKILL)  # no atexit, no cleanup: the orphaning case
    holder.wait(10)
    until(lambda: not _running(), STOP_DEADLINE, "the server stopping after a SIGKILLed user")
    until(lambda: not processes_of(own_home.home), 5, "postgres and watchdog exiting")


def test_server_stays_while_any_user_remains(own_home):
    first, second = _holder(), _holder()
    first.stdin.close()
    first.wait(10)
    lay = embedded.layout()
    assert embedded.in_use(lay), "the second user still holds a lease"
    second.stdin.close()
    second.wait(10)
    until(lambda: not _running(), STOP_DEADLINE, "the server stopping after both users")


def test_pinned_server_counts_as_in_use_until_db_stop(own_home):
    result = run_cli("db", "start")
    assert result.returncode == 0, result.stderr
    lay = embedded.layout()
    assert embedded.status().pinned and embedded.in_use(lay)
    result = run_cli("db", "stop")
    assert result.returncode == 0 and "stopped" in result.stdout
    assert not _running()
    until(lambda: not processes_of(own_home.home), 5, "postgres and watchdog exiting")


def test_a_dead_watchdog_is_replaced_on_next_use(own_home):
    server.resolve()
    first = embedded.status().watchdog_pid
    psutil.Process(first).kill()
    until(lambda: embedded.status().watchdog_pid is None, 5, "the watchdog dying")
    server.resolve()
    second = embedded.status().watchdog_pid
    assert second and second != first


def test_stop_when_nothing_runs_says_so(own_home):
    assert embedded.stop() is False


def test_threads_starting_the_server_at_once_all_get_it(own_home):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        uris = list(pool.map(lambda _: server.resolve().uri, range(8)))
    assert len(set(uris)) == 1
