"""Lesson 09's failures: one kill in the original example stalls its pipe jobs.

The lesson's own cells run after_claim (both originals and hardened), clear_claim_by_hand,
answer_nobody_hears, poisoned_queue and lost_wake_up and assert their outcomes under nbval; only
what the lesson does not prove is tested here.
"""

import pytest

from pgqueue.lab import crash
from pgqueue.queues import single_call


@pytest.mark.parametrize(
    ("name", "version", "held"), [("assigner", "1.0.0", 1), ("merging_results", "1.5.2", 4)]
)
def test_one_kill_in_the_example_stalls_the_victims_pipe_job_and_nothing_else_moves_it(name, version, held):
    measured = crash.kill_in_the_example(name, version)
    assert len(measured.held) == held  # an entry job, or a gatherer's whole set of four
    jobs = single_call.jobs().set_index("job_id")
    (pipe_job,) = set(jobs.loc[measured.held, "pipe_job_id"])
    assert pipe_job in measured.stalled["pipe_job_id"].tolist()
    assert (jobs.loc[measured.held, "job_finished"].isna()).all()
    if pipe_job == 1:  # request 50's order 2 (pipe job 2) waits behind it
        assert measured.stalled["pipe_job_id"].tolist() == [1, 2]
