"""Each design's client against a real lab: claim, hand over, finish, fail, submit, reset; the rows after."""

import json

import pytest

from pgqueue import PgQueueError
from pgqueue.queues import client, designs, heartbeats, labs, steps
from pgqueue.queues.client import KILL, NO_JOB
from pgqueue.queues.heartbeats import Identity

PIPE_DESIGNS = ("single-call", "hardened")


def rows(c: client.Client, query: str, *params) -> list[tuple]:
    return c.conn.execute(query, params).fetchall()


@pytest.mark.parametrize("poc", PIPE_DESIGNS)
def test_a_pipe_job_goes_through_the_client_from_submit_to_finish(poc):
    client.fresh_lab(poc)
    with client.connect(poc) as c:
        assert rows(c, "SELECT count(*) FROM pipe_job_queue") == [(0,)]  # pipelines, no request
        assert rows(c, "SELECT count(*) FROM pipelines") == [(5,)]
        pipe_job = c.submit(2, request_id=7, priority=40)
        assert rows(c, "SELECT request_id, pipe_id, pipe_job_priority FROM pipe_job_queue") == [(7, 2, 40)]
        first, second = Identity.new("first_process", "1.9.2"), Identity.new("second_process", "2.2.0")
        third = Identity.new("third_process", "5.3.0")
        assert c.ask(second) == NO_JOB
        (job,) = c.claim(first)
        assert job["pipe_job_id"] == pipe_job and job["job_process_name"] == "first_process"
        held = rows(c, "SELECT job_assigned_process_uuid FROM job_queue WHERE job_id = %s", job["job_id"])
        assert held == [(first.uuid,)]
        (made,) = c.hand_over(first, [job["job_id"]], [{"description": "step 1"}])
        assert rows(c, "SELECT job_finished FROM job_queue WHERE job_id = %s", job["job_id"]) == [(True,)]
        (job2,) = c.claim(second)
        assert job2["job_id"] == made and job2["job_payload"] == {"description": "step 1"}
        (job3,) = c.act(second, _plan(job2))  # a steps.Action hands over too
        (last,) = c.claim(third)
        assert last["job_id"] == job3
        assert c.act(third, _plan(last, finish=True)) == []
        assert rows(c, "SELECT pipe_job_finished FROM pipe_job_queue WHERE pipe_job_id = %s", pipe_job) == [
            (True,)
        ]
        with pytest.raises(client.NoJob, match="heard 'No job found'"):
            c.claim(first)
        assert c.set_priority(c.submit(2), 5) == 1
        assert c.next_request_id() == 9


@pytest.mark.parametrize("poc", PIPE_DESIGNS)
def test_a_hand_over_makes_one_job_per_payload(poc):
    client.fresh_lab(poc)
    first = Identity.new("first_process", "1.9.2")
    with client.connect(poc) as c:
        c.submit(2)
        (job,) = c.claim(first)
        made = c.hand_over(first, [job["job_id"]], [{"part": 1}, {"part": 2}])
        payloads = rows(c, "SELECT job_payload FROM job_queue WHERE job_id = ANY(%s) ORDER BY job_id", made)
        assert len(made) == 2 and payloads == [({"part": 1},), ({"part": 2},)]


def _plan(job: dict, finish: bool = False) -> steps.Action:
    return steps.Action([job["job_id"]], job["pipe_job_id"], None if finish else [{"description": "next"}])


@pytest.mark.parametrize("poc", PIPE_DESIGNS)
def test_the_client_answers_kill_and_refuses_what_the_lab_refuses(poc):
    client.fresh_lab(poc)
    who = Identity.new("first_process", "1.9.2")
    with client.connect(poc) as c:
        assert c.ask(who) == NO_JOB  # the first call registers the process
        heartbeats.set_kill_switch(poc, who.uuid)
        assert c.ask(who) == KILL
        with pytest.raises(client.NoJob, match="heard 'kill'"):
            c.claim(who)
        with pytest.raises(PgQueueError, match="has no pipeline 99"):
            c.submit(99)
        with pytest.raises(PgQueueError):
            c.set_priority(12345, 5)  # no such pipe job: the lab's own words


def test_hardened_fails_and_finishes_a_batch_through_its_client():
    client.fresh_lab("hardened")
    first, second = Identity.new("first_process", "1.9.2"), Identity.new("second_process", "2.2.0")
    with client.connect("hardened") as c:
        pipe_jobs = [c.submit(2) for _ in range(3)]
        jobs = c.claim(first, batch=3)
        assert sorted(j["pipe_job_id"] for j in jobs) == pipe_jobs
        c.fail(first, [jobs[0]["job_id"]], "it broke")
        outcome = rows(c, "SELECT outcome, error FROM job_attempts WHERE job_id = %s", jobs[0]["job_id"])
        assert outcome == [("failed", "it broke")]
        made = [c.hand_over(first, [j["job_id"]], [{}])[0] for j in jobs[1:]]
        # the second step is not the last: the lab says which jobs are held by whom
        assert {j["job_id"] for j in c.claim(second, batch=2)} == set(made)
        third = Identity.new("third_process", "5.3.0")
        lasts = [c.hand_over(second, [m], [{}])[0] for m in made]
        assert {j["job_id"] for j in c.claim(third, batch=2)} == set(lasts)
        c.finish_all(third, lasts)
        finished = rows(c, "SELECT count(*) FROM pipe_job_queue WHERE pipe_job_finished")
        assert finished == [(2,)]


def test_single_call_has_no_failure_path():
    client.fresh_lab("single-call")
    with (
        client.connect("single-call") as c,
        pytest.raises(PgQueueError, match="lab 'single-call' has no call 'fail_jobs'"),
    ):
        c.fail(Identity.new("first_process", "1.9.2"), [1], "no such call")


def test_notify_listen_submits_listens_beats_hands_over_and_records_failures():
    poc = "notify-listen"
    client.fresh_lab(poc)
    who = Identity.new("first_process", "1.0.0")
    with client.connect(poc) as c:
        job_id = c.submit(1, request_id=3)
        assert rows(c, "SELECT request_id, pipe_id FROM job_queue") == [(3, 1)]
        c.listen(who)
        c.beat(who)
        (note,) = list(c.conn.notifies(timeout=5, stop_after=1))
        job = json.loads(note.payload)
        assert job["job_id"] == job_id
        (made,) = c.hand_over(who, [job_id], [{"description": "done"}])
        assert rows(c, "SELECT job_payload FROM job_queue WHERE job_id = %s", made) == [
            ({"description": "done"},)
        ]
        c.fail(who, [made], "it broke")
        assert rows(c, "SELECT job_id, error_message FROM jobs_failed") == [(made, "it broke")]


def test_a_design_reaches_its_client_from_the_registry():
    for poc, kind, pipelines in [
        ("hardened", client.Client, 5),
        ("notify-listen", client.NotifyListenClient, 2),
    ]:
        client.fresh_lab(poc, upto="pipelines")
        with labs.connect(poc) as conn:
            assert type(designs.get(poc).client(conn)) is kind
            assert conn.execute("SELECT count(*) FROM pipelines").fetchone() == (pipelines,)
