"""The worker loop around both designs: graceful stops, outages, resets, backoff, plain one-line endings.

The queues stay faithful to the originals; these are the promises of the kit's own worker:
Ctrl-C or SIGTERM finishes and hands over the job held, then exits 0; a second Ctrl-C stops at
once (exit 130) naming the job; a lost server is waited for with backoff; a lab reset ends a
worker in one line; no retry path spins.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from pgqueue.lab import races
from pgqueue.queues import fleet, heartbeats, labs, notify_listen, single_call
from pgqueue.queues.heartbeats import Identity
from pgqueue.server import embedded
from pgqueue.wait import until
from tests.conftest import REPO, run_cli

# starts worker processes and restarts servers under them
pytestmark = pytest.mark.slow

DSN_SET = bool(os.environ.get("PGQUEUE_DSN"))
# pipeline 2 of the single-call examples: first_process 1.9.2 holds pipe job 4's entry job
SC_FIRST = ("first_process", "1.9.2")
NL_FIRST = ("first_process", "1.0.0")
WORK = 2.0  # seconds of simulated work: long enough to stop a worker in the middle of it


class CliWorker:
    """`python -m pgqueue worker ...` as a learner runs it, its output in a file."""

    def __init__(self, tmp_path: Path, poc: str, name: str, version: str, *options: str, env=None):
        self.out = tmp_path / f"{name}-{time.monotonic_ns()}.out"
        self.who = Identity.new(name, version)
        argv = [
            sys.executable,
            "-m",
            "pgqueue",
            "worker",
            "--poc",
            poc,
            name,
            version,
            "--uuid",
            self.who.uuid,
        ]
        with open(self.out, "w") as out:
            self.proc = subprocess.Popen(
                [*argv, *options],
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
            )

    def text(self) -> str:
        return self.out.read_text()

    def said(self, fragment: str, timeout: float = 30) -> None:
        """Wait until the worker printed `fragment`; fail at once, showing its output, if it exited."""
        until(
            lambda: fragment in self.text() or self.proc.poll() is not None,
            timeout,
            f"the worker saying {fragment!r}",
        )
        assert fragment in self.text(), f"the worker exited ({self.proc.returncode}):\n{self.text()}"

    def exit_code(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


@pytest.fixture
def cli_workers(tmp_path):
    started: list[CliWorker] = []

    def start(*args, **kwargs) -> CliWorker:
        worker = CliWorker(tmp_path, *args, **kwargs)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.close()


def _held(poc: str, uuid: str) -> list[int]:
    """The unfinished jobs assigned to a worker (both designs: NULL or false means unfinished)."""
    with labs.connect(poc) as conn:
        rows = conn.execute(
            "SELECT job_id FROM job_queue WHERE job_assigned_process_uuid = %s"
            " AND job_finished IS NOT TRUE ORDER BY job_id",
            [uuid],
        ).fetchall()
    return [r[0] for r in rows]


def _job(poc: str, job_id: int) -> dict:
    with labs.connect(poc) as conn:
        cur = conn.execute("SELECT * FROM job_queue WHERE job_id = %s", [job_id])
        return dict(zip([c.name for c in cur.description], cur.fetchone(), strict=True))


def _children_of(poc: str, job_id: int) -> list[int]:
    """Jobs created by the worker that held `job_id` after it (its hand-over)."""
    done = _job(poc, job_id)
    with labs.connect(poc) as conn:
        rows = conn.execute(
            "SELECT job_id FROM job_queue WHERE job_id > %s AND job_creater_process_uuid = %s"
            " ORDER BY job_id",
            [job_id, done["job_assigned_process_uuid"]],
        ).fetchall()
    return [r[0] for r in rows]


# --- a graceful stop ------------------------------------------------------------------------


@pytest.mark.parametrize(("poc", "process"), [("single-call", SC_FIRST), ("notify-listen", NL_FIRST)])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_a_stop_mid_job_finishes_and_hands_over_then_exits_0(cli_workers, poc, process, sig):
    labs.reset(poc, examples=True)
    worker = cli_workers(poc, *process, "--work", str(WORK), str(WORK))
    (job_id,) = until(lambda: _held(poc, worker.who.uuid), 30, "the worker taking its job")
    asked = time.monotonic()
    worker.proc.send_signal(sig)
    assert worker.exit_code(WORK + 15) == 0, worker.text()
    took = time.monotonic() - asked
    assert took < WORK + 10, f"a graceful stop took {took:.1f} s with {WORK} s of work"
    assert _job(poc, job_id)["job_finished"] is True
    assert len(_children_of(poc, job_id)) == 1, "the hand-over to the next step was made"
    last = worker.text().strip().splitlines()[-1]
    assert f"stopped on request after finishing job(s) [{job_id}]" in last
    assert "Traceback" not in worker.text()
    assert heartbeats.states(poc).set_index("process_uuid").loc[worker.who.uuid, "state"] == "stopped"


@pytest.mark.parametrize(("poc", "process"), [("single-call", SC_FIRST), ("notify-listen", NL_FIRST)])
def test_a_second_ctrl_c_stops_at_once_and_names_the_job_it_abandons(cli_workers, poc, process):
    labs.reset(poc, examples=True)
    worker = cli_workers(poc, *process, "--work", "30", "30")
    (job_id,) = until(lambda: _held(poc, worker.who.uuid), 30, "the worker taking its job")
    worker.proc.send_signal(signal.SIGINT)
    worker.said("press Ctrl-C again to stop at once")
    asked = time.monotonic()
    worker.proc.send_signal(signal.SIGINT)
    assert worker.exit_code(10) == 130, worker.text()
    assert time.monotonic() - asked < 5, "the second Ctrl-C did not stop the worker at once"
    assert f"abandoned job(s) [{job_id}]" in worker.text().strip().splitlines()[-1]
    assert _held(poc, worker.who.uuid) == [job_id], "the abandoned job stays assigned, as after a crash"
    assert "Traceback" not in worker.text()


@pytest.mark.parametrize(("poc", "process"), [("single-call", SC_FIRST), ("notify-listen", NL_FIRST)])
def test_fleet_close_lets_thread_workers_finish_their_job(poc, process):
    labs.reset(poc, examples=True)
    opts = designs_options(poc, work=(WORK, WORK))
    workers = fleet.Fleet(poc)
    (member,) = workers.start(*process, worker_options=opts)
    (job_id,) = until(lambda: _held(poc, member.who.uuid), 30, "the thread worker taking its job")
    workers.close()
    assert not member.alive
    assert _job(poc, job_id)["job_finished"] is True and len(_children_of(poc, job_id)) == 1
    assert workers.log.kinds()[-1] == "stopped"


def designs_options(poc: str, **values):
    module = notify_listen if poc == "notify-listen" else single_call
    defaults = {"idle": 0.1} if poc == "notify-listen" else {"poll": 0.1}
    return module.Options(**{**defaults, **values})


OWNER = """
import sys, time
from pgqueue.queues import fleet
from pgqueue.queues.single_call import Options
f = fleet.Fleet("single-call")
(m,) = f.start("first_process", "1.9.2", mode="process", worker_options=Options(poll=0.1, work=(2.0, 2.0)))
print(m.process.pid, m.who.uuid, flush=True)
time.sleep(600)
"""


def test_a_worker_whose_owner_dies_finishes_its_job_then_exits():
    labs.reset("single-call", examples=True)
    owner = subprocess.Popen([sys.executable, "-c", OWNER], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        pid, uuid = owner.stdout.readline().split()
        (job_id,) = until(lambda: _held("single-call", uuid), 30, "the owner's worker taking its job")
        killed = time.monotonic()
        owner.kill()  # SIGKILL: no cleanup at all; the parent-death signal is SIGTERM
        until(
            lambda: not psutil.pid_exists(int(pid)) or psutil.Process(int(pid)).status() == "zombie",
            WORK + 10,
            "the orphaned worker exiting",
        )
        assert time.monotonic() - killed < WORK + 10
        assert _job("single-call", job_id)["job_finished"] is True
        assert len(_children_of("single-call", job_id)) == 1
    finally:
        owner.kill()
        owner.wait()


# --- outages and resets -----------------------------------------------------------------------


@pytest.mark.skipif(DSN_SET, reason="stops and starts the kit's embedded server (PGQUEUE_DSN is set)")
def test_three_workers_live_through_a_server_restart_and_finish_new_work(own_home, cli_workers):
    labs.reset("notify-listen", examples=True)
    chain = [("first_process", "1.0.0"), ("second_process", "1.5.2"), ("third_process", "1.0.0")]
    workers = [cli_workers("notify-listen", n, v, "--idle", "0.1", "--work", "0", "0.05") for n, v in chain]
    until(lambda: notify_listen.job_counts()["finished"] == 3, 60, "the example request going through")
    embedded.stop()
    for worker in workers:
        worker.said("reconnecting in")
    embedded.ensure_running(pin=True)
    for worker in workers:
        worker.said("reconnected after", timeout=60)
    notify_listen.submit(1)
    until(
        lambda: notify_listen.job_counts()["finished"] == 6,
        60,
        "a new request going through after the restart",
    )
    assert all(w.proc.poll() is None for w in workers)
    assert not any("Traceback" in w.text() for w in workers)


@pytest.mark.skipif(DSN_SET, reason="stops and starts the kit's embedded server (PGQUEUE_DSN is set)")
def test_a_job_held_through_a_server_restart_is_handed_over_afterwards(own_home, cli_workers):
    labs.reset("single-call", examples=True)
    worker = cli_workers("single-call", *SC_FIRST, "--poll", "0.1", "--work", "4", "4")
    (job_id,) = until(lambda: _held("single-call", worker.who.uuid), 30, "the worker taking its job")
    embedded.stop()  # while it works
    embedded.ensure_running(pin=True)
    worker.said("reconnected after", timeout=60)
    until(lambda: _job("single-call", job_id)["job_finished"], 30, "the held job handed over")
    assert len(_children_of("single-call", job_id)) == 1
    assert worker.proc.poll() is None and "Traceback" not in worker.text()


@pytest.mark.skipif(DSN_SET, reason="stops the kit's embedded server (PGQUEUE_DSN is set)")
def test_a_worker_gives_up_after_its_deadline_with_one_line(own_home, cli_workers):
    labs.reset("single-call", examples=True)
    worker = cli_workers(
        "single-call", "assigner", "1.0.0", "--poll", "0.1", "--give-up", "2", "--work", "0", "0"
    )
    worker.said("SUCCESS")
    embedded.stop()
    assert worker.exit_code(30) == 1
    text = worker.text()
    assert "Traceback" not in text
    assert text.strip().splitlines()[-1].startswith("pgqueue: error: worker assigner 1.0.0")
    assert "gave up: no database for more than 2 s" in text


def test_setup_stops_the_labs_workers_and_each_says_its_lab_was_reset(cli_workers):
    labs.reset("single-call", examples=True)
    busy = cli_workers("single-call", *SC_FIRST, "--work", "30", "30")
    idle = cli_workers("single-call", "uploader", "1.0.0", "--poll", "0.2")
    until(lambda: _held("single-call", busy.who.uuid), 30, "one worker holding a job")
    idle.said("No job found")
    result = run_cli("setup", "--poc", "single-call", "--examples")
    assert result.returncode == 0, result.stderr
    assert "stopped 2 worker(s)" in result.stdout
    for worker in (busy, idle):
        assert worker.exit_code(10) == 0, worker.text()  # the busy one holds 30 s of work
        assert "lab single-call was reset" in worker.text().strip().splitlines()[-1]
        assert "Traceback" not in worker.text()
    assert "went with it" in busy.text()


# --- retries back off ---------------------------------------------------------------------------


def test_a_lost_job_race_is_retried_with_backoff_not_a_hot_loop():
    labs.reset("single-call", examples=True)
    with labs.connect("single-call") as conn:
        who = Identity.new("assigner", "1.0.0")
        conn.execute("SELECT find_job(%s, %s, %s, %s, false)", [who.uuid, who.server, who.name, who.version])
        # clear the claim by hand, as an operator rescuing the job would: its claim row stays
        conn.execute(
            "UPDATE job_queue SET job_assigned_process_uuid = NULL WHERE job_assigned_process_uuid = %s",
            [who.uuid],
        )
    with fleet.Fleet("single-call") as workers:
        workers.start("assigner", "1.0.0", worker_options=single_call.Options(poll=0.1))
        until(lambda: "retry" in workers.log.kinds(), 30, "the first lost race")
        time.sleep(3)  # the window being measured, not a wait for a condition
    log = workers.log
    retries = log.kinds().count("retry")
    # doubling from 0.05 s to 2 s: about 8 tries in 3 s; a hot loop made about 5,000
    assert 3 <= retries <= 15, retries


def test_serialization_failures_past_the_retries_never_kill_the_worker():
    labs.reset("notify-listen", examples=True)
    race = races.heartbeat_race("first_process", "1.0.0", serializable=True, retries=0)
    assert race.retries == 0 and race.second == ""
    assert "heartbeat lost the race 1 time(s) in a row; beating again" in race.second_events


def test_a_job_too_large_for_notify_is_retried_with_growing_waits(cli_workers):
    labs.reset("notify-listen", examples=True)
    with labs.connect("notify-listen") as conn:
        # past the door (create_first_job refuses it): the original's poisoned queue
        conn.execute(
            "INSERT INTO job_queue (request_id, pipe_id, job_payload, job_creater_process_name,"
            " job_process_name, job_process_version)"
            " VALUES (99, 1, jsonb_build_object('big', repeat('x', 9000)), 'test', 'first_process', '1.0.0')"
        )
        conn.execute(
            "UPDATE job_queue SET job_create_timestamp = now() - interval '1 hour' WHERE request_id = 99"
        )
    worker = cli_workers("notify-listen", *NL_FIRST, "--idle", "0.1")
    worker.said("cannot be sent")
    time.sleep(5)  # the window being measured
    complaints = worker.text().count("cannot be sent")
    assert 2 <= complaints <= 5, complaints  # waits of 1, 2, 4 s: a hot loop beat hundreds of times
    assert worker.proc.poll() is None


def test_a_deadlock_while_handing_over_is_retried():
    labs.reset("single-call", examples=True)
    with labs.connect("single-call") as conn:
        # the server's own error, raised once by a trigger on the first hand-over
        conn.execute(
            # a sequence counts the calls: its nextval survives the rollback the error causes
            "CREATE SEQUENCE hand_overs;"
            "CREATE FUNCTION one_deadlock() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            " IF nextval('hand_overs') = 1 THEN"
            " RAISE EXCEPTION 'deadlock detected (a test)' USING ERRCODE = 'deadlock_detected'; END IF;"
            " RETURN NEW; END $$;"
            "CREATE TRIGGER one_deadlock BEFORE INSERT ON job_queue FOR EACH ROW"
            " WHEN (NEW.job_creater_process_uuid IS NOT NULL) EXECUTE FUNCTION one_deadlock();"
        )
    with fleet.Fleet("single-call") as workers:
        workers.start(*SC_FIRST, worker_options=single_call.Options(poll=0.1, work=(0, 0)))
        until(lambda: "hand_over" in workers.log.kinds(), 30, "the hand-over going through on a retry")
    log = workers.log
    assert any(e.kind == "retry" and "DeadlockDetected" in e.detail for e in log.events())


# --- saying what it is -------------------------------------------------------------------------


def test_a_worker_for_a_process_no_pipeline_has_says_so_and_keeps_running(cli_workers):
    labs.reset("single-call", examples=True)
    worker = cli_workers("single-call", "classification", "9.1.0", "--poll", "0.1")
    worker.said("no pipeline of lab single-call has a step for classification 9.1.0 (yet)")
    worker.said("No job found")
    assert worker.proc.poll() is None
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.exit_code(15) == 0
    status = run_cli("status", "--poc", "single-call").stdout
    assert worker.who.uuid in status and "stopped" in status


def test_process_worker_events_keep_their_moment_in_another_time_zone(monkeypatch):
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    try:
        labs.reset("notify-listen", examples=True)
        before = time.time()
        with fleet.Fleet("notify-listen") as workers:
            (proc,) = workers.start(*NL_FIRST, mode="process", worker_options=notify_listen.Options(idle=0.1))
            (thread,) = workers.start(
                "second_process", "1.5.2", worker_options=notify_listen.Options(idle=0.1)
            )
            until(lambda: proc.events(workers.log) and thread.events(workers.log), 30, "events of both")
            # read before the fleet closes: close() removes the process worker's files
            moments = {m.mode: [e.at for e in m.events(workers.log)] for m in (proc, thread)}
        after = time.time()
        assert moments["process"] and moments["thread"]
        everything = moments["process"] + moments["thread"]
        # a printed local clock read as UTC put process events an hour off under Berlin time
        assert all(before - 1 <= at <= after + 1 for at in everything), (before, moments, after)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
