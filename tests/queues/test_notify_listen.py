"""POC 1: heartbeats answered over NOTIFY, a 3-step chain, kill switches, races, lost messages."""

import json
import re

import psycopg
import pytest
from psycopg.types.json import Jsonb

from pgqueue import PgQueueError
from pgqueue.lab import races
from pgqueue.queues import client, fleet, heartbeats, labs, notify_listen
from pgqueue.queues.heartbeats import Identity
from pgqueue.queues.notify_listen import Options
from pgqueue.wait import until

POC = "notify-listen"
CHAIN = [("first_process", "1.0.0"), ("second_process", "1.5.2"), ("third_process", "1.0.0")]
FAST = Options(timeout=3.0, idle=0.1, recover=0.2, work=(0.0, 0.02))
# The largest NOTIFY payload PostgreSQL sends, in bytes (8000 raises "payload string too long").
NOTIFY_MAX = 7999
# A job's assign timestamp as row_to_json prints it at its longest: 2026-01-31T12:00:00.123456+00:00
LONGEST_TIMESTAMP = 32


@pytest.fixture
def lab():
    """The notify/listen lab, fresh, with the examples (one waiting job for first_process)."""
    labs.reset(POC, examples=True)
    return POC


def listening(who: Identity) -> psycopg.Connection:
    conn = labs.connect(POC)
    notify_listen.listen(conn, who)
    return conn


def heard(conn, timeout=0.0) -> list[str]:
    """Everything that arrives within `timeout` (for checking that nothing does)."""
    return [n.payload for n in conn.notifies(timeout=timeout)]


def answer(conn) -> list[str]:
    """The answer to one heartbeat, plus anything that came with it."""
    got = [n.payload for n in conn.notifies(timeout=5, stop_after=1)]
    return got + heard(conn)


def beat_in_transaction(who: Identity):
    """A connection that has beaten inside a transaction it has not committed yet."""
    conn = labs.connect(POC, autocommit=False)
    heartbeats.send_heartbeat(conn, who)
    return conn


def test_the_job_arrives_on_its_own_channel_only_after_commit(lab):
    who, other = Identity.new("first_process", "1.0.0"), Identity.new("first_process", "1.0.0")
    with listening(who) as ear, listening(other) as other_ear:
        beating = beat_in_transaction(who)
        assert heard(ear, 0.3) == []  # NOTIFY waits for the commit
        beating.commit()
        (reply,) = answer(ear)
        job = json.loads(reply)
        assert job["job_id"] == 1 and job["job_assigned_process_uuid"] == who.uuid
        assert heard(other_ear, 0.3) == []
        beating.close()


def test_the_job_json_holds_the_whole_row(lab):
    who = Identity.new("first_process", "1.0.0")
    with listening(who) as ear:
        with labs.connect(POC) as conn:
            heartbeats.send_heartbeat(conn, who)
            columns = [c.name for c in conn.execute("SELECT * FROM job_queue LIMIT 0").description]
        assert list(json.loads(answer(ear)[0])) == columns


def test_a_rolled_back_heartbeat_answers_nothing_and_takes_nothing(lab):
    who = Identity.new("first_process", "1.0.0")
    with listening(who) as ear:
        beating = beat_in_transaction(who)
        beating.rollback()
        beating.close()
        assert heard(ear, 0.5) == []
    assert notify_listen.job_counts()["waiting"] == 1


def test_no_job_found_then_kill(lab):
    who = Identity.new("third_process", "1.0.0")  # nothing waits for the third step yet
    with listening(who) as ear, labs.connect(POC) as conn:
        heartbeats.send_heartbeat(conn, who)
        assert answer(ear) == [client.NO_JOB]
        heartbeats.set_kill_switch(POC, who.uuid)
        heartbeats.send_heartbeat(conn, who)
        assert answer(ear) == [client.KILL]


def test_an_assigned_job_is_never_handed_out_again(lab):
    first, second = Identity.new("first_process", "1.0.0"), Identity.new("first_process", "1.0.0")
    with listening(first) as ear1, listening(second) as ear2, labs.connect(POC) as conn:
        heartbeats.send_heartbeat(conn, first)
        assert json.loads(answer(ear1)[0])["job_id"] == 1
        heartbeats.send_heartbeat(conn, second)
        heartbeats.send_heartbeat(conn, first)
        assert answer(ear2) == [client.NO_JOB]
        assert answer(ear1) == [client.NO_JOB]


def test_a_chain_of_three_carries_the_job_and_each_configuration(lab):
    with fleet.Fleet(POC) as workers:
        for name, version in CHAIN:
            workers.start(name, version, worker_options=FAST)
        until(lambda: notify_listen.job_counts()["finished"] == 3, 30, "three finished steps")
        assert "failed" not in workers.events()["event"].tolist()
    jobs = notify_listen.jobs()
    with labs.connect(POC) as conn:
        configs = dict(
            conn.execute(
                "SELECT process_name, process_configuration FROM pipeline_processes WHERE pipe_id = 1"
            )
        )
    assert jobs["job_process_name"].tolist() == [name for name, _ in CHAIN]
    assert [configs[n] for n in jobs["job_process_name"]] == jobs["job_process_config"].tolist()
    last = jobs.iloc[-1]["job_payload"]
    assert last["parents"][0]["parents"][0]["description"] == "the first request"
    assert notify_listen.job_counts()["failed"] == 0


def test_a_missing_next_process_raises_and_the_worker_records_it(lab):
    with labs.connect(POC) as conn:
        conn.execute("""
            INSERT INTO pipelines (pipe_id, pipe_name, pipe_version) VALUES (3, 'gappy', '1.0.0');
            INSERT INTO pipeline_processes (pipe_id, process_name, process_version, process_order)
            VALUES (3, 'gap_first', '1.0.0', 1), (3, 'gap_third', '1.0.0', 3);""")
        job = notify_listen.submit(pipe_id=3, request_id=7)
        conn.execute(
            "UPDATE job_queue SET job_assigned_process_uuid = 'aaaaaaaaaaaa' WHERE job_id = %s", [job]
        )
        with pytest.raises(psycopg.errors.RaiseException, match="no process with process_order 2"):
            conn.execute("CALL create_job(%s, '{}')", [job])
        conn.execute("UPDATE job_queue SET job_assigned_process_uuid = NULL WHERE job_id = %s", [job])
    with fleet.Fleet(POC) as workers:
        workers.start("gap_first", "1.0.0", worker_options=FAST)
        until(lambda: notify_listen.job_counts()["failed"] == 1, 30, "the failure being recorded")
    with labs.connect(POC) as conn:
        row = conn.execute("SELECT job_id, request_id, error_message FROM jobs_failed").fetchone()
        finished = conn.execute("SELECT job_finished FROM job_queue WHERE job_id = %s", [job]).fetchone()
    assert row[:2] == (job, 7) and "no process with process_order 2" in row[2]
    assert finished == (False,)  # the raise rolled the whole step back


def test_the_fixed_view_never_mixes_pipelines(lab):
    lesson = labs.step(POC, 1).lesson
    with labs.connect(POC) as conn:
        conn.execute(lesson["neighbours_as_written"])
        mixed = conn.execute(lesson["mixed_neighbours"]).fetchall()
        crossings = conn.execute("""
            SELECT count(*) FROM process_neighbours n
             WHERE previous_process_name IS NOT NULL AND NOT EXISTS (
                   SELECT 1 FROM pipeline_processes p
                    WHERE p.pipe_id = n.pipe_id AND p.process_name = n.previous_process_name)""").fetchone()
        firsts = conn.execute(
            "SELECT count(*) FROM process_neighbours"
            " WHERE process_order = 1 AND previous_process_name IS NULL"
        ).fetchone()
    assert mixed, "the view as written mixes the two example pipelines"
    assert crossings == (0,)
    assert firsts == (2,)


def test_a_worker_process_exits_within_one_timeout_after_its_kill_switch(lab):
    with fleet.Fleet(POC) as workers:
        (member,) = workers.start("third_process", "1.0.0", mode="process", worker_options=FAST)
        until(
            lambda: (heartbeats.states(POC)["process_uuid"] == member.who.uuid).any(),
            30,
            "the worker's first heartbeat",
        )
        workers.kill(member.who.uuid)
        workers.wait_exited(member.who.uuid, FAST.timeout)
        assert member.process.returncode == 0
        assert "kill" in workers.events()["event"].tolist()


def test_serializable_heartbeats_give_one_job_one_owner(lab):
    race = races.heartbeat_race("first_process", "1.0.0", serializable=True)
    assert race.job_ids() == [1]
    assert race.second == client.NO_JOB
    assert race.retries >= 1  # the second worker's UPDATE failed to serialize and was retried


def test_repeatable_read_already_gives_one_job_one_owner(lab):
    # lesson 03: SERIALIZABLE is more than this race needs; REPEATABLE READ refuses the same update
    race = races.heartbeat_race(
        "first_process", "1.0.0", serializable=False, isolation=psycopg.IsolationLevel.REPEATABLE_READ
    )
    assert race.isolation == "REPEATABLE READ"
    assert race.job_ids() == [1] and race.second == client.NO_JOB
    assert race.retries >= 1


def test_read_committed_heartbeats_hand_one_job_to_both(lab):
    race = races.heartbeat_race("first_process", "1.0.0", serializable=False)
    assert race.double_handout
    assert race.job_ids() == [1, 1]
    assert race.retries == 0


def test_a_notification_nobody_listens_to_is_lost_and_the_worker_recovers(lab):
    who = Identity.new("first_process", "1.0.0")
    with labs.connect(POC) as conn:
        heartbeats.send_heartbeat(conn, who)  # the answer goes out while nobody listens
    with listening(who) as ear:
        assert heard(ear, 0.5) == []  # ... and is gone for good
    assert notify_listen.job_counts()["running"] == 1  # while its job stays taken

    notify_listen.submit(pipe_id=1)  # a second job the recovering worker can take
    with labs.connect(POC) as conn:
        conn.execute("ALTER TABLE process_heartbeats DISABLE TRIGGER heartbeat_finds_job")
    quick = Options(timeout=0.3, idle=0.1, recover=0.1, work=(0.0, 0.01))
    with fleet.Fleet(POC) as workers:
        (member,) = workers.start("first_process", "1.0.0", worker_options=quick)
        until(lambda: "error" in workers.events()["event"].tolist(), 10, "a heartbeat going unanswered")
        with labs.connect(POC) as conn:
            conn.execute("ALTER TABLE process_heartbeats ENABLE TRIGGER heartbeat_finds_job")
        until(lambda: "SUCCESS" in workers.events()["event"].tolist(), 10, "the worker getting a job")
    assert "no answer within 0.3 s" in workers.events().query("event == 'error'")["detail"].iloc[0]


def test_quotes_and_sql_in_names_stay_data(lab):
    sly = Identity.new("x'); DROP TABLE job_queue; --", "1'0\"")
    with listening(sly) as ear, labs.connect(POC) as conn:
        heartbeats.send_heartbeat(conn, sly)
        assert answer(ear) == [client.NO_JOB]
        stored = conn.execute("SELECT process_name, process_version FROM process_heartbeats").fetchone()
        assert stored == (sly.name, sly.version)
        assert conn.execute("SELECT to_regclass('job_queue')").fetchone()[0] is not None


def test_a_uuid_that_could_break_out_of_the_channel_is_refused(lab):
    with pytest.raises(PgQueueError, match="12 lowercase hex"):
        Identity("abc'; LISTEN", "host", "first_process", "1.0.0")
    with labs.connect(POC) as conn, pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("CALL send_heartbeat(%s, 'h', 'n', 'v')", ["a';NOTIFY x"])


def test_bad_worker_options_are_refused_with_the_value():
    with pytest.raises(PgQueueError, match=r"work is \(min, max\) seconds with min <= max, got \(2, 1\)"):
        Options(work=(2.0, 1.0))
    with pytest.raises(PgQueueError, match="timeout must be more than 0 and at most 86400 seconds, got -1"):
        Options(timeout=-1)
    with pytest.raises(PgQueueError, match="idle must be a finite number of seconds, got nan"):
        Options(idle=float("nan"))


# --- NOTIFY carries at most 7999 bytes: a job that could not travel is refused where it is made --


def _size_in(message: str) -> int:
    return int(re.search(r"would be (\d+) bytes", message).group(1))


def sized(conn, make, target: int) -> tuple[int | None, str]:
    """Call make(n) (a job whose payload holds n characters) until the new row, as NOTIFY would
    send it, is exactly `target` bytes: (the job id, '') if it was accepted, (None, the error) if not.

    Tries other than the one that hits the target are rolled back. Several tries may be needed:
    the row's own create timestamp prints shorter when its microseconds end in zeros.
    """
    n = target - 800
    for _ in range(20):
        try:
            with conn.transaction() as tx:
                job_id = make(n)
                size = conn.execute(
                    "SELECT job_notify_bytes(j) FROM job_queue j WHERE job_id = %s", [job_id]
                ).fetchone()[0]
                if size == target:
                    return job_id, ""
                raise psycopg.Rollback(tx)
        except psycopg.errors.RaiseException as exc:
            message = exc.diag.message_primary
            size = _size_in(message)
            if size == target:
                return None, message
        n += target - size
    raise AssertionError(f"no job of exactly {target} bytes after 20 tries")


def _counts(conn) -> tuple:
    return conn.execute(
        "SELECT (SELECT count(*) FROM job_queue), (SELECT count(*) FROM job_queue WHERE job_finished)"
    ).fetchone()


def _travels(who: Identity, job_id: int) -> None:
    """A heartbeat of `who` receives job `job_id` over NOTIFY, and its size was measured exactly."""
    with listening(who) as ear, labs.connect(POC) as conn:
        heartbeats.send_heartbeat(conn, who)
        (reply,) = answer(ear)
    job = json.loads(reply)
    assert job["job_id"] == job_id
    # what was sent, with its assign timestamp printed at its longest, is the limit exactly
    assert len(reply.encode()) + LONGEST_TIMESTAMP - len(job["job_assign_timestamp"]) == NOTIFY_MAX


def test_create_first_job_refuses_a_job_too_big_for_notify_at_the_exact_limit(lab):
    with labs.connect(POC) as conn:
        conn.execute("DELETE FROM job_queue")  # the example job would be answered first
        before = _counts(conn)

        def make(n: int) -> int:
            payload = Jsonb({"blob": "x" * n})
            return conn.execute("SELECT create_first_job(2, 1, %s)", [payload]).fetchone()[0]

        refused, message = sized(conn, make, NOTIFY_MAX + 1)
        assert refused is None and "8000 bytes" in message and "at most 7999" in message
        assert _counts(conn) == before  # nothing left behind
        accepted, _ = sized(conn, make, NOTIFY_MAX)
    assert accepted is not None
    _travels(Identity.new("first_process", "1.0.0"), accepted)


def test_create_job_refuses_a_hand_over_too_big_for_notify_at_the_exact_limit(lab):
    with labs.connect(POC) as conn:
        before = _counts(conn)

        def make(n: int) -> int:
            return conn.execute("CALL create_job(1, %s)", [Jsonb({"blob": "x" * n})]).fetchone()[0]

        refused, message = sized(conn, make, NOTIFY_MAX + 1)
        assert refused is None and "8000 bytes" in message
        assert _counts(conn) == before  # job 1 is not finished, no job was made
        accepted, _ = sized(conn, make, NOTIFY_MAX)
        assert _counts(conn) == (before[0] + 1, before[1] + 1)
    _travels(Identity.new("second_process", "1.5.2"), accepted)


def test_submit_turns_the_refusal_into_a_clear_error(lab):
    with pytest.raises(PgQueueError, match=r"would be \d+ bytes .* at most 7999 bytes"):
        notify_listen.submit(pipe_id=1, payload={"blob": "x" * 8000})
    assert notify_listen.job_counts() == {"waiting": 1, "running": 0, "finished": 0, "failed": 0}


def test_a_chain_that_grows_past_the_limit_is_recorded_as_a_failed_hand_over(lab):
    with labs.connect(POC) as conn:
        conn.execute("DELETE FROM job_queue")

        def make(n: int) -> int:
            payload = Jsonb({"description": "a big request", "blob": "x" * n, "parents": []})
            return conn.execute("SELECT create_first_job(3, 1, %s)", [payload]).fetchone()[0]

        big, _ = sized(conn, make, NOTIFY_MAX - 10)  # it travels; the next step carries it, and more
    with fleet.Fleet(POC) as workers:
        workers.start("first_process", "1.0.0", worker_options=FAST)
        until(lambda: notify_listen.job_counts()["failed"] == 1, 30, "the failed hand-over being recorded")
        assert "SUCCESS" in workers.events()["event"].tolist()
    with labs.connect(POC) as conn:
        job_id, request_id, message = conn.execute(
            "SELECT job_id, request_id, error_message FROM jobs_failed"
        ).fetchone()
        jobs = conn.execute("SELECT job_id, job_finished FROM job_queue").fetchall()
    assert (job_id, request_id) == (big, 3)
    assert _size_in(message) > NOTIFY_MAX and "second_process" in message
    assert jobs == [(big, False)]  # the refusal rolled the hand-over back: no job was made


def test_a_row_too_big_for_notify_inserted_by_hand_still_poisons_its_process(lab):
    # the original had no door: this is the failure a later lesson reproduces
    with labs.connect(POC) as conn:
        conn.execute("DELETE FROM job_queue")
        conn.execute(
            "INSERT INTO job_queue (request_id, pipe_id, job_payload, job_creater_process_name,"
            " job_process_name, job_process_version) VALUES (9, 1, %s, 'by hand', 'first_process', '1.0.0')",
            [Jsonb({"blob": "x" * 8000})],
        )
    who = Identity.new("first_process", "1.0.0")
    with listening(who) as ear, labs.connect(POC) as conn:
        conn.isolation_level = psycopg.IsolationLevel.SERIALIZABLE  # as the worker beats
        for _ in range(2):  # every heartbeat of that process, every time
            with (
                pytest.raises(psycopg.errors.InvalidParameterValue, match="payload string too long"),
                conn.transaction(),
            ):
                heartbeats.send_heartbeat(conn, who)
        assert heard(ear, 0.3) == []
        assert conn.execute("SELECT job_assigned_process_uuid FROM job_queue").fetchall() == [(None,)]
        assert conn.execute("SELECT count(*) FROM process_heartbeats").fetchone() == (0,)
