"""Fleets: many real workers started, listed, stopped and killed, none left behind."""

import signal
import subprocess
import sys

import psutil
import pytest

from pgqueue import PgQueueError
from pgqueue.queues import fleet, heartbeats, labs, notify_listen
from pgqueue.queues.notify_listen import Options
from pgqueue.wait import until
from tests.conftest import REPO, run_cli

POC = "notify-listen"
FAST = Options(timeout=3.0, idle=0.1, recover=0.2, work=(0.0, 0.02))
CHAIN = [("first_process", "1.0.0", 1), ("second_process", "1.5.2", 1), ("third_process", "1.0.0", 1)]


@pytest.fixture
def lab():
    labs.reset(POC, examples=True)


def _registered(uuids) -> bool:
    return set(uuids) <= set(heartbeats.states(POC)["process_uuid"])


def test_threads_and_processes_start_list_and_stop(lab):
    with fleet.Fleet(POC) as workers:
        threads = workers.start("third_process", "1.0.0", 2, worker_options=FAST)
        procs = workers.start("third_process", "1.0.0", 2, mode="process", worker_options=FAST)
        uuids = [m.who.uuid for m in threads + procs]
        until(lambda: _registered(uuids), 30, "four workers beating")
        table = workers.table()
        assert sorted(table["uuid"]) == sorted(uuids)
        assert table["running"].all() and set(table["mode"]) == {"thread", "process"}
        assert set(table["state"]) == {"alive"}
        workers.stop(timeout=FAST.timeout)
        assert workers.members(alive=True) == []
        assert {m.process.returncode for m in procs} == {0}  # left through the kill switch
    assert set(heartbeats.states(POC)["state"]) == {"killed"}


def test_hard_kill_is_for_processes_and_leaves_the_heartbeat_behind(lab):
    with fleet.Fleet(POC) as workers:
        (thread,) = workers.start("third_process", "1.0.0", worker_options=FAST)
        (proc,) = workers.start("third_process", "1.0.0", mode="process", worker_options=FAST)
        until(lambda: _registered([thread.who.uuid, proc.who.uuid]), 30, "both beating")
        with pytest.raises(PgQueueError, match="is a thread"):
            workers.hard_kill(thread.who.uuid)
        assert workers.hard_kill(proc.who.uuid) == -signal.SIGKILL
        assert not psutil.pid_exists(proc.process.pid) or proc.process.poll() is not None
        states = heartbeats.states(POC).set_index("process_uuid")["state"]
        assert states[proc.who.uuid] == "alive"  # nobody told the database: it goes stale later


def test_close_stops_everything_without_kill_switches(lab):
    workers = fleet.Fleet(POC)
    members = workers.launch(CHAIN, mode="process", worker_options=FAST)
    workers.launch(CHAIN, worker_options=FAST)
    until(lambda: _registered([m.who.uuid for m in members]), 30, "the processes beating")
    pids = [m.process.pid for m in members]
    workers.close()
    assert workers.members(alive=True) == []
    assert not [pid for pid in pids if psutil.pid_exists(pid)]


def test_an_owner_that_exits_without_close_leaves_no_worker(lab):
    owner = subprocess.run(
        [
            sys.executable,
            "-c",
            "from pgqueue.queues import fleet\n"
            "from pgqueue.queues.notify_listen import Options\n"
            "f = fleet.Fleet('notify-listen')\n"
            "ms = f.start('third_process', '1.0.0', 2, mode='process', worker_options=Options(idle=0.1))\n"
            "print(' '.join(str(m.process.pid) for m in ms))\n",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert owner.returncode == 0, owner.stderr
    pids = [int(p) for p in owner.stdout.split()]
    assert len(pids) == 2
    until(lambda: not [p for p in pids if psutil.pid_exists(p)], 10, "the owner's workers exiting")


def test_bad_requests_are_refused(lab):
    with fleet.Fleet(POC) as workers:
        with pytest.raises(PgQueueError, match="mode is 'thread' or 'process', got 'fiber'"):
            workers.start("x", "1", mode="fiber")
        with pytest.raises(PgQueueError, match="count is a whole number.*got 0"):
            workers.start("x", "1", 0)
        with pytest.raises(PgQueueError, match="no worker 'ffffffffffff' in this fleet"):
            workers.kill("ffffffffffff")
    with pytest.raises(PgQueueError, match="unknown lab 'nope'"):
        fleet.Fleet("nope")


def test_three_cli_workers_carry_twenty_jobs_and_kill_stops_one(lab):
    result = run_cli("submit", "--poc", POC, "--pipe", "1", "--count", "20")
    assert result.returncode == 0, result.stderr
    requests = 21  # the example's first request, and twenty more
    with fleet.Fleet(POC) as workers:
        members = workers.launch(CHAIN, mode="process", worker_options=FAST)
        until(
            lambda: notify_listen.job_counts()["finished"] == 3 * requests,
            120,
            "every request going through all three steps",
        )
        assert notify_listen.job_counts() == {"waiting": 0, "running": 0, "finished": 63, "failed": 0}
        jobs = notify_listen.jobs()
        chains = jobs.sort_values("job_id").groupby("request_id")["job_process_name"].agg(list)
        assert len(chains) == requests
        assert all(chain == ["first_process", "second_process", "third_process"] for chain in chains)

        target = members[1].who.uuid
        assert run_cli("kill", target).returncode == 0
        workers.wait_exited(target, FAST.timeout)
        assert [m.alive for m in members] == [True, False, True]
    status = run_cli("status", "--poc", POC).stdout
    assert "63 finished" in status and "killed" in status
