"""POC 2: every answer and rule of the single-call queue, pinned against a real PostgreSQL."""

import json
import threading
import time

import psycopg
import pytest
from psycopg.types.json import Jsonb

from pgqueue import PgQueueError, queries
from pgqueue.lab import races
from pgqueue.queues import client, fleet, heartbeats, labs, single_call
from pgqueue.queues.heartbeats import Identity
from pgqueue.queues.pipelines import OrderGateWarning
from pgqueue.queues.single_call import Options
from pgqueue.wait import until

POC = "single-call"
FAST = Options(poll=0.1, work=(0.0, 0.02))


def pipeline(conn, pipe_id: int, steps: list[tuple[str, dict]], order: int = 1) -> None:
    """A made-up pipeline: steps are (process name, configuration), all version 1.0.0."""
    conn.execute(
        "INSERT INTO pipelines (pipe_id, pipe_name, pipe_version, pipe_order) VALUES (%s, %s, '1', %s)",
        [pipe_id, f"test {pipe_id}", order],
    )
    for n, (name, config) in enumerate(steps, start=1):
        conn.execute(
            "INSERT INTO pipeline_processes (pipe_id, process_name, process_version, process_order,"
            " process_configuration) VALUES (%s, %s, '1.0.0', %s, %s)",
            [pipe_id, name, n, Jsonb(config)],
        )


def ask(conn, who: Identity, multi: bool = False) -> str:
    return conn.execute(
        "SELECT find_job(%s, %s, %s, %s, %s)", [who.uuid, who.server, who.name, who.version, multi]
    ).fetchone()[0]


def take(conn, name: str, version: str = "1.0.0", multi: bool = False) -> list[dict]:
    answer = ask(conn, Identity.new(name, version), multi)
    assert answer.startswith("["), answer
    return json.loads(answer)


def create_jobs(conn, job_ids, payloads):
    return conn.execute("CALL create_jobs(%s, %s)", [job_ids, Jsonb(payloads)]).fetchone()[0]


def finish_pipe(conn, job_ids, pipe_job_id):
    conn.execute("CALL finish_pipe(%s, %s)", [job_ids, pipe_job_id])


def entry_jobs(conn) -> dict[int, int]:
    return dict(
        conn.execute("SELECT pipe_job_id, job_id FROM job_queue WHERE job_parent_set_elements IS NULL")
    )


# --- the four answers ------------------------------------------------------------------------


def test_find_job_answers_a_json_array_holding_the_job(conn):
    pipe_job = single_call.submit(pipe_id=2, request_id=1)
    (job,) = take(conn, "first_process", "1.9.2")
    assert job["pipe_job_id"] == pipe_job and job["job_assigned_process_uuid"]
    columns = [c.name for c in conn.execute("SELECT * FROM job_queue LIMIT 0").description]
    assert list(job) == columns


def test_find_job_answers_no_job_found_and_kill(conn):
    who = Identity.new("first_process", "1.9.2")
    assert ask(conn, who) == client.NO_JOB
    heartbeats.set_kill_switch(POC, who.uuid)
    assert ask(conn, who) == client.KILL


def test_a_second_caller_queues_behind_the_first_rows_lock_then_takes_the_next_job(conn):
    # FOR UPDATE without SKIP LOCKED: the second caller waits for the first one's commit, then
    # PostgreSQL re-checks the row, finds it taken and moves on to the next row it sorted
    single_call.submit(pipe_id=2, request_id=1)
    single_call.submit(pipe_id=2, request_id=2)
    first, second = Identity.new("first_process", "1.9.2"), Identity.new("first_process", "1.9.2")
    with labs.connect(POC) as a, labs.connect(POC) as b:
        heard: list[str] = []
        racer = threading.Thread(target=lambda: heard.append(ask(b, second)))
        with a.transaction():
            (got_first,) = json.loads(ask(a, first))
            racer.start()
            until(lambda: races.waiting_on_lock(b.info.backend_pid, POC), 10, "the second caller waiting")
            assert not heard  # it queues: no answer while the first holds the row
        racer.join(10)
    (got_second,) = json.loads(heard[0])
    assert got_first["job_id"] != got_second["job_id"]
    assert got_second["job_assigned_process_uuid"] == second.uuid


def test_skip_locked_takes_the_next_row_at_once_while_the_first_is_held(conn):
    # what lesson 04 says SKIP LOCKED would change: no queueing behind the first caller's lock
    single_call.submit(pipe_id=2, request_id=1)
    single_call.submit(pipe_id=2, request_id=2)
    pick = labs.step(POC, "find_job").lesson["skip_locked_pick"]
    params = {"name": "first_process", "version": "1.9.2"}
    with labs.connect(POC) as a, labs.connect(POC) as b, a.transaction():
        (held,) = a.execute(pick, params).fetchone()
        # a wait would end in an error, not a hang
        b.execute(queries.load("clients/races.sql")["lock_timeout"], {"ms": "5000"})
        with b.transaction():
            (skipped_to,) = b.execute(pick, params).fetchone()
        assert skipped_to != held  # answered while A still holds its row


def test_find_job_beats_for_the_worker(conn):
    who = Identity.new("uploader", "1.0.0")
    ask(conn, who)
    assert heartbeats.states(POC).set_index("process_uuid").loc[who.uuid, "state"] == "alive"


def test_a_gatherer_that_loses_the_claim_race_is_told_to_retry(conn):
    pipeline(conn, 9, [("split", {"fan_out": 2}), ("part", {}), ("join", {"gather": True})])
    single_call.submit(pipe_id=9)
    (first,) = take(conn, "split")
    create_jobs(conn, [first["job_id"]], [{}, {}])
    for part in (take(conn, "part")[0], take(conn, "part")[0]):
        create_jobs(conn, [part["job_id"]], [{}])
    race = races.claim_race("join", "1.0.0")
    assert len(json.loads(race.first)) == 2
    assert race.second == client.LOST_RACE


# --- priorities -------------------------------------------------------------------------------


def test_lower_priority_runs_first_then_the_oldest(conn):
    late_urgent = [single_call.submit(pipe_id=2, priority=p) for p in (100, 100, 50)]
    order = [take(conn, "first_process", "1.9.2")[0]["pipe_job_id"] for _ in late_urgent]
    assert order == [late_urgent[2], late_urgent[0], late_urgent[1]]


def test_a_priority_change_reorders_what_find_job_hands_out_next(conn):
    first, second = single_call.submit(pipe_id=2), single_call.submit(pipe_id=2)
    assert single_call.set_priority(second, 10) == 1
    assert take(conn, "first_process", "1.9.2")[0]["pipe_job_id"] == second
    with pytest.raises(PgQueueError, match="no pipe job 999"):
        single_call.set_priority(999, 1)
    with pytest.raises(PgQueueError, match="priority must be a whole number, got 'high'"):
        single_call.set_priority(first, "high")


def test_jobs_created_later_inherit_the_changed_priority(conn):
    pipe_job = single_call.submit(pipe_id=2, priority=100)
    (job,) = take(conn, "first_process", "1.9.2")
    single_call.set_priority(pipe_job, 7)  # the running job keeps its priority ...
    (child,) = create_jobs(conn, [job["job_id"]], [{}])
    assert conn.execute("SELECT job_priority FROM job_queue WHERE job_id = %s", [child]).fetchone() == (7,)


def test_a_sets_priority_is_its_best_members(conn):
    pipeline(conn, 9, [("split", {"fan_out": 2}), ("part", {}), ("join", {"gather": True})])
    sets = {}
    for priority in (50, 60):
        pipe_job = single_call.submit(pipe_id=9, priority=priority)
        (entry,) = [j for j in take(conn, "split") if j["pipe_job_id"] == pipe_job]
        sets[pipe_job] = create_jobs(conn, [entry["job_id"]], [{}, {}])
    for _ in range(4):  # every part of both sets finishes: both sets are complete
        (part,) = take(conn, "part")
        create_jobs(conn, [part["job_id"]], [{}])
    # one job of the priority-60 set becomes urgent: the set's priority is now its best, 1
    later = max(sets)
    conn.execute(
        "UPDATE job_queue SET job_priority = 1 WHERE job_id = ("
        " SELECT min(job_id) FROM job_queue WHERE pipe_job_id = %s AND job_process_name = 'join')",
        [later],
    )
    batch = take(conn, "join", multi=True)
    assert {j["pipe_job_id"] for j in batch} == {later} and len(batch) == 2


# --- fan-out and fan-in -----------------------------------------------------------------------


def test_fan_out_creates_n_jobs_sharing_one_sibling_set(conn):
    pipeline(conn, 9, [("split", {"fan_out": 3}), ("part", {"size": "s"}), ("join", {"gather": True})])
    single_call.submit(pipe_id=9)
    (entry,) = take(conn, "split")
    made = create_jobs(conn, [entry["job_id"]], [{"n": 1}, {"n": 2}, {"n": 3}])
    rows = conn.execute(
        "SELECT job_set_elements, job_creater_set_elements, job_parent_set_elements, job_payload,"
        " job_process_config FROM job_queue WHERE job_id = ANY(%s) ORDER BY job_id",
        [made],
    ).fetchall()
    assert len(made) == 3
    assert all(r[0] == made for r in rows)
    assert all(r[1] == [entry["job_id"]] and r[2] == [entry["job_id"]] for r in rows)
    assert [r[3]["n"] for r in rows] == [1, 2, 3]
    assert all(r[4] == {"size": "s"} for r in rows)  # the next step's configuration


def test_a_gatherer_waits_for_the_whole_set_then_gets_it_at_once(conn):
    pipeline(conn, 9, [("split", {"fan_out": 3}), ("part", {}), ("join", {"gather": True})])
    single_call.submit(pipe_id=9)
    (entry,) = take(conn, "split")
    parts = create_jobs(conn, [entry["job_id"]], [{}, {}, {}])
    handed = []
    for _ in parts[:2]:
        (part,) = take(conn, "part")
        handed += create_jobs(conn, [part["job_id"]], [{}])
        assert ask(conn, Identity.new("join", "1.0.0"), multi=True) == client.NO_JOB
    (part,) = take(conn, "part")
    handed += create_jobs(conn, [part["job_id"]], [{}])
    batch = take(conn, "join", multi=True)
    assert sorted(j["job_id"] for j in batch) == sorted(handed)
    assert all(j["job_creater_set_elements"] == parts for j in batch)


def test_a_complete_set_is_not_hidden_by_an_incomplete_one(conn):
    pipeline(conn, 9, [("split", {"fan_out": 2}), ("part", {}), ("join", {"gather": True})])
    urgent, calm = single_call.submit(pipe_id=9, priority=1), single_call.submit(pipe_id=9, priority=100)
    sets = {}
    for _ in (urgent, calm):
        (entry,) = take(conn, "split")
        sets[entry["pipe_job_id"]] = create_jobs(conn, [entry["job_id"]], [{}, {}])
    (one_urgent_part,) = take(conn, "part")  # priority 1: the urgent set's parts go first
    create_jobs(conn, [one_urgent_part["job_id"]], [{}])
    take(conn, "part")  # the urgent set's other part: taken, never finished
    for _ in range(2):
        (part,) = take(conn, "part")
        create_jobs(conn, [part["job_id"]], [{}])
    batch = take(conn, "join", multi=True)  # the original answered 'No job found' here
    assert {j["pipe_job_id"] for j in batch} == {calm}


def test_a_gatherer_never_gets_an_entry_job(conn):
    pipeline(conn, 9, [("join", {"gather": True})])
    single_call.submit(pipe_id=9)
    assert ask(conn, Identity.new("join", "1.0.0"), multi=True) == client.NO_JOB
    assert len(take(conn, "join")) == 1  # single mode does hand it out


# --- pipe jobs and orders ---------------------------------------------------------------------


def test_the_entry_job_carries_the_pipe_job_and_the_step_configuration(conn):
    pipe_job = single_call.submit(pipe_id=2, request_id=77, priority=42)
    (job,) = take(conn, "first_process", "1.9.2")
    assert job["job_payload"]["pipe_job_id"] == pipe_job
    assert job["job_payload"]["request_id"] == 77 and job["job_payload"]["pipe_job_priority"] == 42
    assert job["job_process_config"] == {"sample_rate": 30}
    assert job["job_set_elements"] == [job["job_id"]] and job["job_creater_set_elements"] is None


def _finish_whole(conn, pipe_job_id: int) -> None:
    """Run a pipe job to its end by hand (its processes must serve no other waiting pipe job)."""
    while True:
        row = conn.execute(
            "SELECT job_process_name, job_process_version FROM job_queue WHERE pipe_job_id = %s"
            " AND job_finished IS NULL ORDER BY job_id LIMIT 1",
            [pipe_job_id],
        ).fetchone()
        if row is None:
            return
        (job,) = take(conn, *row)
        last = conn.execute(
            "SELECT NOT EXISTS (SELECT 1 FROM pipeline_processes a JOIN pipeline_processes b"
            " USING (pipe_id) WHERE a.pipe_id = %s AND a.process_name = %s"
            " AND b.process_order > a.process_order)",
            [job["pipe_id"], row[0]],
        ).fetchone()[0]
        if last:
            finish_pipe(conn, [job["job_id"]], pipe_job_id)
        else:
            create_jobs(conn, [job["job_id"]], [{}])


def test_order_two_starts_only_when_every_order_one_pipe_job_of_the_request_finished(conn):
    for pipe_id, name in ((20, "chain"), (21, "other"), (22, "unrelated")):
        pipeline(conn, pipe_id, [(f"{name}_a", {}), (f"{name}_b", {})])
    with pytest.warns(OrderGateWarning, match="has none unfinished"):  # its order-1 work comes next
        report = single_call.submit(pipe_id=4, request_id=50)  # generate reports: order 2
    chain = single_call.submit(pipe_id=20, request_id=50)
    other = single_call.submit(pipe_id=21, request_id=50)
    unrelated = single_call.submit(pipe_id=22, request_id=51)
    assert set(entry_jobs(conn)) == {chain, other, unrelated}  # order 1 starts at once
    _finish_whole(conn, chain)
    _finish_whole(conn, unrelated)
    assert report not in entry_jobs(conn)  # request 50 still has an unfinished order-1 pipe job
    _finish_whole(conn, other)
    assert report in entry_jobs(conn)


def test_order_zero_never_triggers_order_one(conn):
    pipeline(conn, 10, [("outside", {})], order=0)
    pipeline(conn, 11, [("inside", {})], order=1)
    pipeline(conn, 12, [("after", {})], order=2)
    fed = single_call.submit(pipe_id=10, request_id=5)  # order 0 starts at once, too
    assert fed in entry_jobs(conn)
    with pytest.warns(OrderGateWarning, match="has none unfinished"):  # its order-1 work comes next
        later = single_call.submit(pipe_id=12, request_id=5)
    _finish_whole(conn, fed)
    assert later not in entry_jobs(conn)


def test_a_gap_in_orders_stalls_the_request(conn):
    pipeline(conn, 11, [("inside", {})], order=1)
    pipeline(conn, 13, [("far", {})], order=3)
    first = single_call.submit(pipe_id=11, request_id=6)
    with pytest.warns(OrderGateWarning, match="has none unfinished"):  # its order-1 work comes next
        far = single_call.submit(pipe_id=13, request_id=6)
    _finish_whole(conn, first)
    assert far not in entry_jobs(conn)


def test_finish_pipe_finishes_the_jobs_and_the_pipe_job(conn):
    pipeline(conn, 9, [("solo", {})])
    pipe_job = single_call.submit(pipe_id=9)
    (job,) = take(conn, "solo")
    finish_pipe(conn, [job["job_id"]], pipe_job)
    assert conn.execute(
        "SELECT job_finished FROM job_queue WHERE job_id = %s", [job["job_id"]]
    ).fetchone() == (True,)
    assert conn.execute(
        "SELECT pipe_job_finished, pipe_job_finish_timestamp IS NOT NULL FROM pipe_job_queue"
        " WHERE pipe_job_id = %s",
        [pipe_job],
    ).fetchone() == (True, True)


# --- bad input: a clear error, nothing half-written -------------------------------------------


def _snapshot(conn):
    return conn.execute(
        "SELECT (SELECT count(*) FROM job_queue), (SELECT count(*) FROM job_queue WHERE job_finished),"
        " (SELECT count(*) FROM pipe_job_queue)"
    ).fetchone()


@pytest.mark.parametrize(
    ("payloads", "message"),
    [
        ({"not": "an array"}, "payloads must be a JSON array, got object"),
        ("text", "payloads must be a JSON array, got string"),
        ([], "payloads is an empty array"),
    ],
)
def test_create_jobs_refuses_payloads_that_are_not_a_non_empty_array(conn, payloads, message):
    single_call.submit(pipe_id=2)
    (job,) = take(conn, "first_process", "1.9.2")
    before = _snapshot(conn)
    with pytest.raises(psycopg.errors.RaiseException, match=message):
        create_jobs(conn, [job["job_id"]], payloads)
    assert _snapshot(conn) == before


def test_create_jobs_refuses_unknown_ids_and_the_last_process(conn):
    single_call.submit(pipe_id=2)
    (job,) = take(conn, "first_process", "1.9.2")
    before = _snapshot(conn)
    with pytest.raises(psycopg.errors.RaiseException, match=r"jobs \{\d+,999999\} are not all existing"):
        create_jobs(conn, [job["job_id"], 999999], [{}])
    assert _snapshot(conn) == before
    (second,) = create_jobs(conn, [job["job_id"]], [{}])
    (job2,) = take(conn, "second_process", "2.2.0")
    (third,) = create_jobs(conn, [job2["job_id"]], [{}])
    (job3,) = take(conn, "third_process", "5.3.0")
    before = _snapshot(conn)
    with pytest.raises(psycopg.errors.RaiseException, match="no process after third_process: the last step"):
        create_jobs(conn, [job3["job_id"]], [{}])
    assert _snapshot(conn) == before


def test_bad_pipe_jobs_are_refused(conn):
    pipeline(conn, 9, [])
    before = _snapshot(conn)
    with pytest.raises(psycopg.errors.RaiseException, match="inserted already finished"):
        conn.execute(
            "INSERT INTO pipe_job_queue (request_id, pipe_id, pipe_job_finished) VALUES (1, 2, true)"
        )
    with pytest.raises(PgQueueError, match="no pipeline 404"):
        single_call.submit(pipe_id=404)
    with pytest.raises(PgQueueError, match="pipeline 9 has no process with process_order 1"):
        single_call.submit(pipe_id=9)
    assert _snapshot(conn) == before


def test_process_names_holding_quotes_or_sql_are_data(conn):
    sly = "x'); DROP TABLE job_queue; --"
    pipeline(conn, 9, [(sly, {})])
    single_call.submit(pipe_id=9)
    (job,) = take(conn, sly)
    assert job["job_process_name"] == sly
    assert conn.execute("SELECT to_regclass('job_queue') IS NOT NULL").fetchone() == (True,)


# --- real workers -----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_the_kill_switch_stops_a_worker_within_one_poll_interval(lab, mode):
    with fleet.Fleet(POC) as workers:
        (member,) = workers.start("uploader", "1.0.0", mode=mode, worker_options=FAST)
        until(lambda: member.who.uuid in set(heartbeats.states(POC)["process_uuid"]), 30, "a first heartbeat")
        flipped = time.time()
        workers.kill(member.who.uuid)
        # the worker's own stop (its next ask answers kill) is bounded by its poll; the exit after it
        # is the interpreter's teardown, which a busy machine slows, so it need only come
        workers.wait_exited(member.who.uuid, 30)
        events = workers.events()
        (stopped,) = events.loc[events["event"] == "kill", "at"]
        after = stopped.timestamp() - flipped
        assert after <= FAST.poll + 1.0, f"it stopped {after:.2f} s after its kill switch was set"


def test_eight_processes_claim_every_one_of_200_jobs_exactly_once(conn):
    pipeline(conn, 9, [("solo", {})])
    conn.execute(
        "INSERT INTO pipe_job_queue (request_id, pipe_id) SELECT n, 9 FROM generate_series(1, 200) n"
    )
    with fleet.Fleet(POC) as workers:
        workers.start("solo", "1.0.0", 8, mode="process", worker_options=Options(poll=0.05, work=(0.0, 0.0)))
        until(lambda: single_call.job_counts()["pipe_jobs_finished"] == 200, 120, "200 pipe jobs finishing")
    claims = single_call.claims()
    claimed = [i for ids in claims["claimed_job_ids"] for i in ids]
    assert len(claimed) == len(set(claimed)) == 200
    assert single_call.job_counts() == {
        "waiting": 0,
        "running": 0,
        "finished": 200,
        "pipe_jobs_finished": 200,
        "pipe_jobs": 200,
    }
    assert claims["claimer_uuid"].nunique() > 1  # the work was shared


def test_workers_carry_a_fan_out_and_its_gathering_through_a_pipeline(lab):
    pipe_job = single_call.submit(pipe_id=5)  # the README flow: assigner, fan-out, classify, gather
    with fleet.Fleet(POC) as workers:
        workers.launch(
            [
                ("assigner", "1.0.0", 1),
                ("wearing_compliance", "1.5.2", 1),
                ("classification", "1.0.0", 2),
                ("movemonitor", "1.0.0", 1),
            ],
            worker_options=FAST,
        )
        until(lambda: single_call.job_counts()["pipe_jobs_finished"] == 1, 30, "the pipe job finishing")
    jobs = single_call.jobs()
    assert jobs.groupby("job_process_name").size().to_dict() == {
        "assigner": 1,
        "wearing_compliance": 1,
        "classification": 4,
        "movemonitor": 4,
    }
    assert single_call.claims()["size"].max() == 4  # movemonitor took the four at once
    assert (jobs["pipe_job_id"] == pipe_job).all()


def test_two_order_one_pipe_jobs_finishing_at_once_stall_order_two(conn):
    # the original author's unsolved note, reproduced by forcing the interleaving
    with pytest.warns(OrderGateWarning, match="has none unfinished"):  # its order-1 work comes next
        report = single_call.submit(pipe_id=4, request_id=50)
    first, second = single_call.submit(pipe_id=2, request_id=50), single_call.submit(pipe_id=2, request_id=50)
    race = races.order_gate_race(first, second, report)
    assert not race.started
    assert report not in entry_jobs(conn)


def test_finishers_released_together_stall_the_original_gate_in_many_trials():
    # every schedule, not one: a barrier releases both finishers of a fresh request per trial
    labs.reset(POC, examples=True)
    trials = races.order_gate_trials(100)
    assert trials.stalled > 0 and not trials.held
    assert trials.deadlocks == 0 and trials.twice == 0
    assert trials.started + trials.stalled == 100


def test_lesson_07s_fix_opens_the_gate_once_in_every_trial_and_by_any_path():
    labs.reset(POC, examples=True, fixes=True)
    assert "07_order_gating.fix" in labs.reset(POC, examples=True, fixes=True).steps
    trials = races.order_gate_trials(200)
    assert trials.held and trials.deadlocks == trials.twice == trials.stalled == 0
    # the forced schedule too: the second finisher now waits for the first one's commit
    with pytest.warns(OrderGateWarning):
        report = single_call.submit(pipe_id=4, request_id=70)
    one, two = single_call.submit(pipe_id=2, request_id=70), single_call.submit(pipe_id=2, request_id=70)
    assert races.order_gate_race(one, two, waiting=report).started


def test_without_fixes_the_lab_is_the_original():
    assert "07_order_gating.fix" not in labs.reset(POC, examples=True).steps
    with labs.connect(POC) as conn:
        triggers = [r[0] for r in conn.execute("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")]
    assert "pipe_job_starts" in triggers and "pipe_job_takes_turn" not in triggers


def test_one_after_the_other_they_open_the_gate(conn):
    with pytest.warns(OrderGateWarning, match="has none unfinished"):  # its order-1 work comes next
        report = single_call.submit(pipe_id=4, request_id=50)
    first, second = single_call.submit(pipe_id=2, request_id=50), single_call.submit(pipe_id=2, request_id=50)
    with labs.connect(POC) as one:
        one.execute("UPDATE pipe_job_queue SET pipe_job_finished = true WHERE pipe_job_id = %s", [first])
    with labs.connect(POC) as two:
        two.execute("UPDATE pipe_job_queue SET pipe_job_finished = true WHERE pipe_job_id = %s", [second])
    assert report in entry_jobs(conn)
