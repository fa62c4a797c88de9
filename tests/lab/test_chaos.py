"""The chaos test: hardened worker processes SIGKILLed at random while 300 pipe jobs run.

Handlers failing at random are lesson 12's capstone round (fail=0.1, max_attempts=3): the lesson
asserts under nbval that it held with some attempts failed; this round, longer and without
failures, proves no job is lost or dead-lettered by the kills alone.
"""

import pytest

from pgqueue.lab import chaos
from pgqueue.queues import client, labs

# Once per CI run: minutes of CPU on a small machine, and the server adds nothing to what it proves.
pytestmark = pytest.mark.chaos

REQUESTS = 60  # five pipe jobs each: 300 pipe jobs, 1,680 jobs


@pytest.fixture
def lab():
    """The hardened lab with the example pipelines and no request yet."""
    client.fresh_lab(chaos.POC)


def test_the_judge_names_lost_jobs_jobs_run_twice_and_a_gate_opened_early(lab):
    q = labs.step(chaos.POC, "find_job").lesson
    with labs.connect(chaos.POC) as conn:
        made = conn.execute(q["chaos_request"], {"pipe_ids": list(chaos.REQUEST)}).fetchall()
        conn.execute(q["start_pipe_job_now"], {"pipe_job_id": made[-1][1], "pipe_id": 4})  # order 2, early
        job_id = conn.execute(q["chaos_jobs"]).fetchone()[0]
        for who in ("aaaaaaaaaaaa", "bbbbbbbbbbbb"):
            conn.execute(q["succeed_again"], {"job_id": job_id, "uuid": who})
        found = chaos.judge(conn)
    problems = "\n".join(found.problems)
    assert not found.held
    assert "jobs never ended (lost)" in problems
    assert "1 jobs succeeded more than once (run twice)" in problems
    assert f"order-2 work began before order 1 had finished in request {made[0][0]}" in problems


def test_workers_killed_at_random_lose_no_job_run_none_twice_and_open_no_gate_early(lab):
    found = chaos.run(REQUESTS, seconds=30.0, kill_every=0.5, rescue_after=1.0)
    print(found.summary())
    assert found.held, found.summary()
    assert found.pipe_jobs == found.pipe_jobs_finished == 5 * REQUESTS
    assert found.jobs_succeeded == found.jobs and found.jobs_dead == 0
    # the kills hit workers holding jobs, and those jobs were rescued and run again
    assert found.kills_holding > 0 and found.rescued > 0, found.summary()
