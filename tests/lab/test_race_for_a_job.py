"""Lesson 10's races: one job to two workers, callers queueing behind one lock, a pipe job finished
twice, an incomplete set hiding complete ones; each in the original, then holding in hardened.

The lesson's cells assert SERIALIZABLE's forced race and trials and the hardened hand-out trials as
these tests did; those are proven there only."""

import pytest

from pgqueue.lab import race_for_a_job, races
from pgqueue.queues import client, notify_listen

ORIGINAL, HARDENED = "single-call", "hardened"


@pytest.fixture
def notify_listen_lab():
    client.fresh_lab("notify-listen")


@pytest.fixture(params=[ORIGINAL, HARDENED])
def design(request):
    client.fresh_lab(request.param)
    return request.param


def test_without_serializable_one_job_is_handed_to_two_notify_listen_workers(notify_listen_lab):
    # the forced schedule: the second beat reads the job before the first commits
    notify_listen.submit(pipe_id=1)
    forced = races.heartbeat_race("first_process", "1.0.0", serializable=False)
    assert forced.double_handout, forced
    trials = race_for_a_job.notify_listen_handout_trials(20, workers=6, serializable=False)
    # measured, not asserted beyond what no luck can change: every job was handed at least once,
    # and a doubled trial hands out more than one
    assert trials.handed >= trials.trials + trials.doubled and trials.retries == 0, trials
    print(trials.row())


def test_find_job_queues_every_caller_behind_one_lock_in_the_original_and_none_in_hardened(design):
    queue = race_for_a_job.lock_queue(design, callers=5)
    if design == ORIGINAL:
        assert queue.waited == 5 and queue.answered_while_held == 0, queue
    else:
        assert queue.waited == 0 and queue.answered_while_held == 5, queue
    assert len(set(queue.jobs)) == 5 and 0 not in queue.jobs, queue  # each caller its own job, in the end


def test_finishing_a_pipe_job_twice_is_refused_in_the_original_and_a_no_op_in_hardened(design):
    twice = race_for_a_job.finish_twice(design)
    assert twice.first == "accepted" and twice.second_waited and twice.pipe_job_finished, twice
    assert twice.next_order_started == 1, twice  # neither design starts order 2 twice
    if design == ORIGINAL:
        assert twice.second.startswith("refused") and "unfinished jobs" in twice.second, twice
        assert twice.stranger == "accepted", twice  # anybody may finish anybody's job
    else:
        assert twice.second == "accepted", twice  # the repeat changes nothing
        assert twice.stranger.startswith("refused") and "is not held by" in twice.stranger, twice


def test_an_incomplete_set_hides_the_complete_one_only_in_the_original(design):
    hidden = race_for_a_job.hidden_set(design)
    assert len(hidden.complete) == 4 and len(hidden.incomplete) == 1, hidden
    assert hidden.handed == (() if design == ORIGINAL else hidden.complete), hidden
