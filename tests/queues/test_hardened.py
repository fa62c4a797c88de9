"""The hardened design: leases, rescue, idempotent finishing, retries, dead letters, safe gates, gathers."""

import json
import os
import secrets

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.types.json import Jsonb

from pgqueue import queries, server
from pgqueue.check import core
from pgqueue.lab import demo, races
from pgqueue.queues import client, fleet, hardened, labs
from pgqueue.wait import until
from tests.conftest import run_cli

POC = "hardened"
FAST = hardened.Options(poll=0.5, work=(0.0, 0.02))


def _q() -> queries.Queries:
    return queries.load("clients/hardened.sql")


def _t() -> queries.Queries:
    return labs.step(POC, "find_job").lesson


def uuid() -> str:
    return secrets.token_hex(6)


def ask(conn, who: str, name: str, version: str, batch: int = 1, multi: bool = False):
    params = {"uuid": who, "server": "test", "name": name, "version": version, "multi": multi, "batch": batch}
    answer = conn.execute(_q()["find_job"], params).fetchone()[0]
    return answer if answer in (client.KILL, client.NO_JOB) else json.loads(answer)


def hand_over(conn, who: str, ids: list[int], payloads: list[dict]) -> list[int]:
    params = {"uuid": who, "job_ids": ids, "payloads": Jsonb(payloads)}
    return conn.execute(_q()["create_jobs"], params).fetchone()[0]


def job_row(conn, job_id: int) -> dict:
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(_t()["job"], {"job_id": job_id}).fetchone()


def outcomes(conn, job_id: int) -> list[str]:
    return [row[0] for row in conn.execute(_t()["outcomes"], {"job_id": job_id})]


def test_the_example_runs_through_with_every_job_succeeding_exactly_once():
    labs.reset(POC, examples=True)
    with fleet.Fleet(POC) as workers:
        workers.launch(demo.LAUNCHER + demo.README_FLOW, worker_options=FAST)
        until(lambda: hardened.job_counts()["pipe_jobs_finished"] == 5, 60, "every pipe job finishing")
    counts = hardened.job_counts()
    assert counts["waiting"] == counts["running"] == counts["dead"] == 0
    attempts = hardened.attempts()
    assert (attempts["outcome"] == "succeeded").all() and attempts["job_id"].is_unique
    assert len(attempts) == counts["finished"]


def test_batch_workers_run_the_example_through_finishing_each_job_exactly_once():
    labs.reset(POC, examples=True)
    with fleet.Fleet(POC) as workers:
        workers.launch(
            demo.LAUNCHER + demo.README_FLOW,
            worker_options=hardened.Options(poll=0.5, work=(0.0, 0.02), batch=5),
        )
        until(lambda: hardened.job_counts()["pipe_jobs_finished"] == 5, 60, "every pipe job finishing")
    counts = hardened.job_counts()
    assert counts["waiting"] == counts["running"] == counts["dead"] == 0
    attempts = hardened.attempts()
    assert (attempts["outcome"] == "succeeded").all() and attempts["job_id"].is_unique


def test_finish_pipes_finishes_a_batch_of_last_steps_in_one_call_only_for_their_holder(conn):
    bench = queries.load("clients/bench.sql")
    pipe_id = conn.execute(bench["bench_pipeline"]).fetchone()[0]  # one step: its jobs are last steps
    conn.execute(bench["bench_step"], {"pipe_id": pipe_id})
    made = [hardened.submit(pipe_id=pipe_id) for _ in range(3)]
    holder = uuid()
    jobs = ask(conn, holder, "bench_noop", "1.0.0", batch=3)
    ids = [job["job_id"] for job in jobs]
    finish = _q()["finish_pipes"]
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="is not held by"):
        conn.execute(finish, {"uuid": uuid(), "job_ids": ids})
    assert hardened.job_counts()["pipe_jobs_finished"] == 0  # refused whole: nothing finished
    with pytest.raises(psycopg.errors.NoDataFound, match="no job"):
        conn.execute(finish, {"uuid": holder, "job_ids": [*ids, 2_000_000_000]})
    conn.execute(finish, {"uuid": holder, "job_ids": ids})
    conn.execute(finish, {"uuid": holder, "job_ids": ids})  # again: a no-op, as finish_pipe's
    assert hardened.job_counts()["pipe_jobs_finished"] == len(made)
    assert all(outcomes(conn, job_id) == ["succeeded"] for job_id in ids)


def test_a_claim_skips_the_row_another_caller_holds_instead_of_waiting(conn):
    hardened.submit(pipe_id=2)
    hardened.submit(pipe_id=2)
    with labs.connect(POC) as a, labs.connect(POC) as b:
        b.execute(queries.load("clients/races.sql")["lock_timeout"], {"ms": "5000"})  # a wait would fail
        with a.transaction():
            (held,) = ask(a, uuid(), "first_process", "1.9.2")
            (other,) = ask(b, uuid(), "first_process", "1.9.2")  # answered while A's claim is open
            assert ask(b, uuid(), "first_process", "1.9.2") == client.NO_JOB
    assert held["job_id"] != other["job_id"]


def test_a_batch_claim_takes_the_best_jobs_first_each_as_its_own_lease(conn):
    made = [hardened.submit(pipe_id=2, priority=p) for p in (100, 50, 100, 10)]
    who = uuid()
    jobs = ask(conn, who, "first_process", "1.9.2", batch=3)
    assert [job["pipe_job_id"] for job in jobs] == [made[3], made[1], made[0]]
    assert {job["job_assigned_process_uuid"] for job in jobs} == {who}
    assert all(outcomes(conn, job["job_id"]) == [None] for job in jobs)  # one running attempt each


def test_a_silent_workers_job_is_rescued_by_the_next_caller_and_its_late_finish_is_refused(conn):
    conn.execute(_t()["rescue_after"], {"seconds": 0.2})
    hardened.submit(pipe_id=2)
    lost, rescuer = uuid(), uuid()
    (job,) = ask(conn, lost, "first_process", "1.9.2")
    conn.execute(_t()["age_heartbeat"], {"uuid": lost, "seconds": 1})  # as if it died a second ago
    (again,) = ask(conn, rescuer, "first_process", "1.9.2")
    assert again["job_id"] == job["job_id"] and again["job_attempts"] == 2
    assert outcomes(conn, job["job_id"]) == ["rescued", None]
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="is not held by"):
        hand_over(conn, lost, [job["job_id"]], [{}])
    assert hand_over(conn, rescuer, [job["job_id"]], [{}])


def test_finishing_twice_is_a_no_op_that_returns_the_same_jobs(conn):
    hardened.submit(pipe_id=2)
    who = uuid()
    (job,) = ask(conn, who, "first_process", "1.9.2")
    first = hand_over(conn, who, [job["job_id"]], [{"n": 1}, {"n": 2}])
    before = conn.execute(_t()["table_sizes"]).fetchone()
    assert hand_over(conn, who, [job["job_id"]], [{"n": 1}, {"n": 2}]) == first
    assert conn.execute(_t()["table_sizes"]).fetchone() == before
    assert outcomes(conn, job["job_id"]) == ["succeeded"]


def test_a_failed_attempt_backs_off_then_runs_again_and_the_last_one_is_dead_lettered(conn):
    conn.execute(_t()["retries"], {"max_attempts": 2, "base": 60})
    hardened.submit(pipe_id=2)
    who = uuid()
    (job,) = ask(conn, who, "first_process", "1.9.2")
    conn.execute(_q()["fail_jobs"], {"uuid": who, "job_ids": [job["job_id"]], "error": "disk full"})
    row = job_row(conn, job["job_id"])
    assert row["wait_s"] == pytest.approx(60, abs=5) and row["job_dead_timestamp"] is None
    assert ask(conn, uuid(), "first_process", "1.9.2") == client.NO_JOB  # it waits out its backoff
    conn.execute(_t()["run_now"], {"job_id": job["job_id"]})
    (again,) = ask(conn, who, "first_process", "1.9.2")
    conn.execute(_q()["fail_jobs"], {"uuid": who, "job_ids": [again["job_id"]], "error": "disk full again"})
    row = job_row(conn, job["job_id"])
    assert row["job_dead_timestamp"] is not None and row["job_error"] == "disk full again"
    assert outcomes(conn, job["job_id"]) == ["failed", "failed"]
    assert hardened.job_counts()["dead"] == 1


def test_a_job_tried_hundreds_of_times_backs_off_by_the_cap(conn):
    # backoff_base * 2^(n-1) overflows an interval past n = 60 or so; max_attempts may be in the hundreds,
    # and the wait is then the cap (5 minutes)
    conn.execute(_t()["retries"], {"max_attempts": 500, "base": 1})
    hardened.submit(pipe_id=2)
    who = uuid()
    (job,) = ask(conn, who, "first_process", "1.9.2")
    conn.execute(_t()["attempts_so_far"], {"job_id": job["job_id"], "attempts": 300})
    conn.execute(_q()["fail_jobs"], {"uuid": who, "job_ids": [job["job_id"]], "error": "disk full"})
    row = job_row(conn, job["job_id"])
    assert row["wait_s"] == pytest.approx(300, abs=5) and row["job_dead_timestamp"] is None


@pytest.mark.parametrize("hold", [False, True], ids=["released-together", "held-after-row-lock"])
def test_the_order_gate_opens_exactly_once_in_every_trial(lab, hold):
    def connect():
        return labs.connect(POC)

    result = races.order_gate_trials(30 if not hold else 5, connect=connect, hold=hold)
    assert result.held and result.deadlocks == result.stalled == result.twice == 0, result


def _complete_set(conn, priority: int = 100) -> list[int]:
    """A request through the README's flow up to its gatherer: four movemonitor jobs of one set."""
    hardened.submit(pipe_id=5, priority=priority)
    who = uuid()
    (entry,) = ask(conn, who, "assigner", "1.0.0")
    hand_over(conn, who, [entry["job_id"]], [{}])
    (middle,) = ask(conn, who, "wearing_compliance", "1.5.2")
    hand_over(conn, who, [middle["job_id"]], [{}] * 4)
    return [
        hand_over(conn, who, [job["job_id"]], [{}])[0] for job in ask(conn, who, "classification", "1.0.0", 4)
    ]


def test_two_gatherers_at_once_never_share_a_set(conn):
    racers = [labs.connect(POC) for _ in range(2)]
    try:
        for _ in range(5):
            gathered = _complete_set(conn)
            answers = core.together(2, lambda i: ask(racers[i], uuid(), "movemonitor", "1.0.0", multi=True))
            got = [a for a in answers if a != client.NO_JOB]
            assert len(got) == 1, answers
            assert sorted(job["job_id"] for job in got[0]) == sorted(gathered)
    finally:
        for racer in racers:
            racer.close()


def test_an_incomplete_set_hides_no_complete_one_behind_it(conn):
    complete = _complete_set(conn, priority=100)
    hardened.submit(pipe_id=5, priority=1)  # more urgent, but its set will not be complete
    who = uuid()
    (entry,) = ask(conn, who, "assigner", "1.0.0")
    hand_over(conn, who, [entry["job_id"]], [{}])
    (middle,) = ask(conn, who, "wearing_compliance", "1.5.2")
    hand_over(conn, who, [middle["job_id"]], [{}] * 4)
    (first,) = ask(conn, who, "classification", "1.0.0")
    hand_over(conn, who, [first["job_id"]], [{}])  # one of four parallel jobs done: the set is incomplete
    jobs = ask(conn, uuid(), "movemonitor", "1.0.0", multi=True)
    assert sorted(job["job_id"] for job in jobs) == sorted(complete)
    assert ask(conn, uuid(), "movemonitor", "1.0.0", multi=True) == client.NO_JOB


def test_a_request_with_an_order_gap_is_refused_and_late_order_two_work_starts_at_once(conn):
    with pytest.raises(Exception, match="has no pipe job of order 1"):
        hardened.submit(pipe_id=4, request_id=70)
    assert conn.execute(_t()["pipe_jobs_of"], {"request_id": 70}).fetchone()[0] == 0
    first = hardened.submit(pipe_id=2, request_id=71)
    conn.execute(_t()["finish_pipe_job"], {"pipe_job_id": first})
    later = hardened.submit(pipe_id=4, request_id=71)
    assert conn.execute(_t()["jobs_of"], {"pipe_job_id": later}).fetchone()[0] == 1


def test_a_sigkilled_workers_job_is_rescued_by_a_plain_worker_and_runs_to_the_end(conn):
    conn.execute(_t()["rescue_after"], {"seconds": 1.0})
    pipe_job = hardened.submit(pipe_id=2)
    slow = hardened.Options(poll=0.5, work=(30.0, 30.0))
    with fleet.Fleet(POC) as workers:
        (victim,) = workers.start("first_process", "1.9.2", mode="process", worker_options=slow)
        job = until(lambda: _held_by(conn, victim.who.uuid), 30, "the victim holding the entry job")
        workers.hard_kill(victim.who.uuid)  # SIGKILL: no goodbye, its lease just stops being renewed
        workers.launch(
            [("first_process", "1.9.2", 1), ("second_process", "2.2.0", 1), ("third_process", "5.3.0", 1)],
            worker_options=FAST,
        )
        until(lambda: hardened.job_counts()["pipe_jobs_finished"] == 1, 30, "the pipe job finishing")
    assert outcomes(conn, job) == ["rescued", "succeeded"]
    assert hardened.pipe_jobs().set_index("pipe_job_id").loc[pipe_job, "pipe_job_finished"]


def _held_by(conn, who: str) -> int | None:
    rows = [r for r in hardened.jobs().itertuples() if r.job_assigned_process_uuid == who]
    return rows[0].job_id if rows else None


@pytest.mark.parametrize(
    "statement",
    ["delete_every_job", "read_pipelines", "change_a_priority", "turn_a_setting"],
)
def test_the_worker_role_may_call_the_queue_and_nothing_else(conn, statement):
    role = hardened.worker_role()
    assert role == f"{labs.database(POC)}_worker"
    with labs.connect(POC, user=role) as worker:
        assert worker.info.user == role
        assert ask(worker, uuid(), "assigner", "1.0.0") == client.NO_JOB  # the queue's call works
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
            worker.execute(_t()[statement])
    assert conn.execute(_t()["table_sizes"]).fetchone()[0] == 0  # nothing was touched


def test_the_examples_workers_connect_as_the_worker_role():
    labs.reset(POC, examples=True)
    with fleet.Fleet(POC) as workers:
        workers.launch([("first_process", "1.9.2", 1)], worker_options=FAST)
        until(lambda: hardened.job_counts()["finished"] >= 1, 30, "the worker finishing a job")
        with labs.connect(POC) as conn:
            users = {row[0] for row in conn.execute(_t()["worker_users"], {"pattern": "pgqueue worker%"})}
    assert users == {hardened.worker_role()}


@pytest.mark.skipif(not os.environ.get("PGQUEUE_DSN"), reason="the embedded server's owner may create roles")
def test_an_owner_that_may_not_create_roles_gets_a_lab_without_separation_and_is_told(lab):
    plain = f"{labs.prefix()}plain"
    with server.connect() as admin:
        admin.execute(sql.SQL(_t()["create_plain_role"]).format(role=sql.Identifier(plain)))
    dsn = make_conninfo(os.environ["PGQUEUE_DSN"], user=plain)
    env = {**os.environ, "PGQUEUE_DSN": dsn, "PGQUEUE_DB_PREFIX": f"{labs.prefix()}plain_"}
    done = run_cli("setup", "--poc", "hardened", "--examples", env=env)
    assert done.returncode == 0, done.stderr
    assert f"lab hardened runs without a worker role: '{plain}' may not create roles" in done.stderr
