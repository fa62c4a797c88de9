"""Lesson 10's checker: what tests/corpora/l10_skip_locked_claim.py does not already prove."""

import pytest

from pgqueue import check
from pgqueue.errors import PgQueueError
from tests.corpora.l10_skip_locked_claim import FREE, MINE, claim

PICK = f"SELECT job_id FROM job_queue\n WHERE {FREE}\n   AND {MINE}"


@pytest.mark.parametrize(
    ("text", "cause"),
    [
        (claim("FOR KEY SHARE SKIP LOCKED"), "each took it FOR KEY SHARE"),
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
    verdict = check.skip_locked_claim(text, callers=3)
    assert not verdict.holds and cause in str(verdict), verdict
    assert "does not lock the job's row" not in str(verdict) and "lock more rows" not in str(verdict), verdict


def test_the_claim_checker_judges_what_a_query_does_and_says_what_is_missing():
    # a TODO in a comment decides nothing: every caller got the same 1
    ones = check.skip_locked_claim("SELECT 1 -- TODO", callers=3)
    assert not ones.holds and "went to two callers" in str(ones), ones
    assert "expected your SQL as a string" in str(check.skip_locked_claim(None))
    with pytest.raises(PgQueueError, match="callers is a whole number from 2 to 20, got 1"):
        check.skip_locked_claim("SELECT 1", callers=1)


def test_the_claim_checker_tells_a_missing_tie_break_from_a_holder_of_nobody():
    # equal priorities are stored newer first, in sorted order: a sort keeps them so, every time
    untied = check.skip_locked_claim(claim(order="job_priority"), callers=3)
    assert not untied.holds and "two jobs of equal priority came back in the wrong order" in str(untied), (
        untied
    )
    assert "means nobody" not in str(untied), untied
    null_only = claim(free="job_assigned_process_uuid IS NULL AND job_finished IS NULL")
    nobody = check.skip_locked_claim(null_only, callers=3)
    assert not nobody.holds and "assigned to '', which means nobody" in str(nobody), nobody
    assert "wrong order" not in str(nobody), nobody
