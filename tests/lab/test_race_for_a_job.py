"""The failure lab's races: one job to two workers, callers queueing behind one lock, a pipe job
finished twice, an incomplete set hiding complete ones; each in the original, then holding in hardened."""

import pytest

from pgqueue.errors import PgQueueError
from pgqueue.lab import failures, races
from pgqueue.queues import notify_listen

ORIGINAL, HARDENED = "single-call", "hardened"


@pytest.fixture
def notify_listen_lab():
    failures.race_lab("notify-listen")


@pytest.fixture(params=[ORIGINAL, HARDENED])
def design(request):
    failures.race_lab(request.param)
    return request.param


def test_without_serializable_one_job_is_handed_to_two_notify_listen_workers(notify_listen_lab):
    # the forced schedule: the second beat reads the job before the first commits
    notify_listen.submit(pipe_id=1)
    forced = races.heartbeat_race("first_process", "1.0.0", serializable=False)
    assert forced.double_handout, forced
    trials = failures.notify_listen_handout_trials(20, workers=6, serializable=False)
    # measured, not asserted beyond what no luck can change: every job was handed at least once,
    # and a doubled trial hands out more than one
    assert trials.handed >= trials.trials + trials.doubled and trials.retries == 0, trials
    print(trials.row())


def test_serializable_never_doubles_a_job_and_pays_in_retries(notify_listen_lab):
    notify_listen.submit(pipe_id=1)
    forced = races.heartbeat_race("first_process", "1.0.0", serializable=True)
    assert not forced.double_handout and forced.retries >= 1, forced
    trials = failures.notify_listen_handout_trials(20, workers=6, serializable=True)
    assert trials.doubled == 0 and trials.handed == trials.trials, trials


def test_hardened_hands_each_job_to_one_caller_with_one_attempt():
    failures.race_lab(HARDENED)
    trials = failures.hardened_handout_trials(20, workers=6)
    assert trials.doubled == 0 and trials.handed == trials.trials == trials.attempts, trials


def test_find_job_queues_every_caller_behind_one_lock_in_the_original_and_none_in_hardened(design):
    queue = failures.lock_queue(design, callers=5)
    if design == ORIGINAL:
        assert queue.waited == 5 and queue.answered_while_held == 0, queue
    else:
        assert queue.waited == 0 and queue.answered_while_held == 5, queue
    assert len(set(queue.jobs)) == 5 and 0 not in queue.jobs, queue  # each caller its own job, in the end


def test_finishing_a_pipe_job_twice_is_refused_in_the_original_and_a_no_op_in_hardened(design):
    twice = failures.finish_twice(design)
    assert twice.first == "accepted" and twice.second_waited and twice.pipe_job_finished, twice
    assert twice.next_order_started == 1, twice  # neither design starts order 2 twice
    if design == ORIGINAL:
        assert twice.second.startswith("refused") and "unfinished jobs" in twice.second, twice
        assert twice.stranger == "accepted", twice  # anybody may finish anybody's job
    else:
        assert twice.second == "accepted", twice  # the repeat changes nothing
        assert twice.stranger.startswith("refused") and "is not held by" in twice.stranger, twice


def test_an_incomplete_set_hides_the_complete_one_only_in_the_original(design):
    hidden = failures.hidden_set(design)
    assert len(hidden.complete) == 4 and len(hidden.incomplete) == 1, hidden
    assert hidden.handed == (() if design == ORIGINAL else hidden.complete), hidden


SKIP_LOCKED = """
SELECT job_id FROM job_queue
 WHERE coalesce(job_assigned_process_uuid, '') = '' AND job_finished IS NULL
   AND job_process_name = %(name)s AND job_process_version = %(version)s
 ORDER BY job_priority, job_create_timestamp
 LIMIT 1
   {lock}
"""


@pytest.mark.parametrize(
    ("lock", "wrong"),
    [("FOR UPDATE SKIP LOCKED", None), ("FOR UPDATE", "callers waited"), ("", "went to two callers")],
    ids=["skip-locked", "for-update", "no-lock"],
)
def test_the_claim_checker_passes_skip_locked_and_names_what_the_others_get_wrong(lock, wrong):
    verdict = failures.claim_skips_locked(SKIP_LOCKED.format(lock=lock))
    if wrong is None:
        assert verdict.holds, verdict
    else:
        assert not verdict.holds and wrong in str(verdict), verdict


PICK = """SELECT job_id FROM job_queue
 WHERE coalesce(job_assigned_process_uuid, '') = '' AND job_finished IS NULL
   AND job_process_name = %(name)s AND job_process_version = %(version)s"""


@pytest.mark.parametrize(
    ("text", "cause"),
    [
        (SKIP_LOCKED.format(lock="FOR KEY SHARE SKIP LOCKED"), "each took it FOR KEY SHARE"),
        (
            f"{PICK}\n AND job_id NOT IN ({PICK} FOR UPDATE SKIP LOCKED)\n ORDER BY job_priority LIMIT 1",
            "the rows it locks are not the rows it returns",
        ),
        (
            f"SELECT job_id FROM job_queue WHERE job_id = ({PICK} ORDER BY job_priority, job_create_timestamp"
            " LIMIT 1) FOR UPDATE SKIP LOCKED",
            "they passed over a locked job and took none in its place",
        ),
    ],
    ids=["for-key-share", "not-in-skip-locked", "pick-before-the-lock"],
)
def test_the_claim_checker_names_the_cause_the_locks_it_saw_show(text, cause):
    # each locks the rows it touches, and none locks more rows than the one it returns
    verdict = failures.claim_skips_locked(text, callers=3)
    assert not verdict.holds and cause in str(verdict), verdict
    assert "does not lock the job's row" not in str(verdict) and "lock more rows" not in str(verdict), verdict


def test_the_claim_checker_judges_what_a_query_does_and_says_what_is_missing():
    # a TODO in a comment decides nothing: every caller got the same 1
    ones = failures.claim_skips_locked("SELECT 1 -- TODO", callers=3)
    assert not ones.holds and "went to two callers" in str(ones), ones
    assert "expected your SQL as a string" in str(failures.claim_skips_locked(None))
    with pytest.raises(PgQueueError, match="callers is a whole number from 2 to 20, got 1"):
        failures.claim_skips_locked("SELECT 1", callers=1)


def test_the_claim_checker_tells_a_missing_tie_break_from_a_holder_of_nobody():
    # equal priorities are stored newer first, in sorted order: a sort keeps them so, every time
    untied = failures.claim_skips_locked(
        SKIP_LOCKED.replace(", job_create_timestamp", "").format(lock="FOR UPDATE SKIP LOCKED"), callers=3
    )
    assert not untied.holds and "two jobs of equal priority came back in the wrong order" in str(untied), (
        untied
    )
    assert "means nobody" not in str(untied), untied
    null_only = SKIP_LOCKED.replace(
        "coalesce(job_assigned_process_uuid, '') = ''", "job_assigned_process_uuid IS NULL"
    )
    nobody = failures.claim_skips_locked(null_only.format(lock="FOR UPDATE SKIP LOCKED"), callers=3)
    assert not nobody.holds and "assigned to '', which means nobody" in str(nobody), nobody
    assert "wrong order" not in str(nobody), nobody
