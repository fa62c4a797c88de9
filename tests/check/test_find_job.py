"""Lesson 04's checker accepts the reference pick and names what each broken pick gets wrong."""

import pytest

from pgqueue import check
from pgqueue.queues import labs

REFERENCE = str(labs.step("single-call", "find_job").excerpt("find_job"))
ORDER = "ORDER BY job_priority, job_create_timestamp"
WAITS = "     WHERE coalesce(job_assigned_process_uuid, '') = ''\n       AND job_finished IS NULL"


def broken(old: str, new: str) -> str:
    assert old in REFERENCE, old  # the reference still has what the broken version removes
    return REFERENCE.replace(old, new)


def test_the_reference_pick_holds():
    verdict = check.find_job_pick(REFERENCE)
    assert verdict.holds, str(verdict)


def test_a_pick_still_to_write_is_judged_on_what_it_does():
    # a TODO no longer refuses an answer by itself: without its ORDER BY this pick hands out the
    # wrong job first, and that is what is said
    verdict = check.find_job_pick(broken(ORDER, "-- TODO: which job?"))
    assert not verdict.holds
    assert "the lowest job_priority goes first" in str(verdict), str(verdict)


@pytest.mark.parametrize(
    ("pick", "says"),
    [
        (
            broken(" AND job_process_version = p_version", ""),
            "call 1 got job 3 (picker_",
        ),
        (
            broken("       AND job_finished IS NULL\n", ""),
            "call 1 got job 1 (picker_",
        ),
        (broken(WAITS, "     WHERE job_finished IS NULL"), "which worker busy0worker had taken already"),
        (
            broken("coalesce(job_assigned_process_uuid, '') = ''", "job_assigned_process_uuid IS NULL"),
            "its job_assigned_process_uuid is '' (empty), which means no worker, as NULL does",
        ),
        (
            broken(ORDER, "ORDER BY job_priority, job_create_timestamp DESC"),
            "waited: among equal priorities the oldest job",
        ),
        (
            broken(ORDER, "ORDER BY job_priority DESC, job_create_timestamp"),
            "the lowest job_priority goes first (50 before 200)",
        ),
        (
            broken(ORDER, "ORDER BY job_create_timestamp"),
            "the lowest job_priority goes first (50 before 200)",
        ),
        (
            broken(
                "    IF NOT FOUND THEN\n        RETURN 'No job found';",
                "    IF NOT FOUND THEN\n        RETURN '[]';",
            ),
            "expected 'No job found'",
        ),
        # measured: without FOR UPDATE no job goes twice (the claim's key refuses the second),
        # but racing callers read the same job and all but one are told to retry
        (
            broken("     LIMIT 1\n       FOR UPDATE;", "     LIMIT 1;"),
            "caller B was told 'Retry, I lost the job race' although another job waited: without FOR UPDATE",
        ),
    ],
    ids=[
        "ignores-version",
        "forgets-finished",
        "takes-taken",
        "null-only",
        "newest-first",
        "highest-first",
        "age-only",
        "empty-array",
        "no-for-update",
    ],
)
def test_a_broken_pick_is_refused_in_plain_words(pick, says):
    verdict = check.find_job_pick(pick)
    assert not verdict.holds
    assert says in str(verdict), str(verdict)


def test_a_pick_that_hands_one_job_to_everyone_is_caught():
    # no claim, no lock, no check of who has it: a second caller gets the job the first holds
    pick = broken(
        "    BEGIN\n        INSERT INTO job_queue_claim (claimed_job_ids, claimer_uuid) "
        "VALUES (ARRAY[job.job_id], p_uuid);\n"
        "    EXCEPTION WHEN unique_violation THEN\n        RETURN 'Retry, I lost the job race';\n    END;\n",
        "",
    ).replace("     LIMIT 1\n       FOR UPDATE;", "     LIMIT 1;")
    verdict = check.find_job_pick(pick)
    assert not verdict.holds
    assert "caller B got job" in str(verdict), str(verdict)
    assert "one job must go to one worker only" in str(verdict), str(verdict)


def test_a_pick_that_skips_locked_rows_holds_too_and_is_not_said_to_wait():
    verdict = check.find_job_pick(broken("       FOR UPDATE;", "       FOR UPDATE SKIP LOCKED;"))
    assert verdict.holds, str(verdict)
    assert "caller B did not wait: it passed over the locked row" in str(verdict), str(verdict)
    assert not any("waited" in line for line in verdict.held), str(verdict)


def test_a_refused_race_claims_no_caller_got_a_job():
    # the reviewer saw "every caller got a job (19 of 40)" on a refused answer: NOWAIT fails callers
    verdict = check.find_job_pick(broken("       FOR UPDATE;", "       FOR UPDATE NOWAIT;"))
    assert not verdict.holds
    assert not any("every caller got a job" in line for line in verdict.held), str(verdict)
