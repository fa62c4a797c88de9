"""Lesson 04's checker beyond its corpus: a pick that hands one job to everyone, SKIP LOCKED and NOWAIT."""

from pgqueue import check
from pgqueue.queues import labs

REFERENCE = str(labs.step("single-call", "find_job").excerpt("find_job"))


def broken(old: str, new: str) -> str:
    assert old in REFERENCE, old  # the reference still has what the broken version removes
    return REFERENCE.replace(old, new)


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
