"""Lesson 12's checker accepts the hardened claim_jobs and names what each broken claim gets wrong."""

import pytest

from pgqueue.check.claim import claim_jobs
from pgqueue.queues import labs

REFERENCE = str(labs.step("hardened", "find_job").excerpt("claim_jobs"))
PICK = """\
         WHERE job_assigned_process_uuid IS NULL AND job_finished IS NULL AND job_dead_timestamp IS NULL
           AND job_process_name = p_name AND job_process_version = p_version
           AND job_run_after <= clock_timestamp()
         ORDER BY job_priority, job_create_timestamp
         LIMIT batch_size
           FOR UPDATE SKIP LOCKED"""
ORDER = "ORDER BY job_priority, job_create_timestamp"
SKELETON_TODO = """\
         -- TODO: WHERE the job waits (nobody holds it, not finished, not dead-lettered, due now) and is
         -- a job of p_name p_version; the best first; at most batch_size; locked, passing over any
         -- job another caller has locked instead of waiting for it
    """  # the closing )) of ARRAY( and lease_jobs( follows on a line of its own


def broken(old: str, new: str) -> str:
    assert old in REFERENCE, old  # the reference still has what the broken version changes
    return REFERENCE.replace(old, new)


def test_the_reference_claim_holds():
    verdict = claim_jobs(REFERENCE)
    assert verdict.holds, str(verdict)
    assert "scanned the whole table 0 times" in str(verdict), str(verdict)
    held = [line for line in verdict.held if "held inside its claim" in line]
    assert len(held) == 3 and all("none of them both" in line for line in held), str(verdict)


def test_the_skeleton_is_refused_for_what_it_does():
    # unfilled, the skeleton is valid SQL that leases every job of the table: judged on that
    verdict = claim_jobs(broken(PICK, SKELETON_TODO))
    assert not verdict.holds
    assert "call 1 (batch_size" in str(verdict) and "got job" in str(verdict), str(verdict)


@pytest.mark.parametrize(
    ("claim", "says"),
    [
        (
            broken("FOR UPDATE SKIP LOCKED", "FOR UPDATE"),
            "of them waited for the held job's lock until lock_timeout (2 s) stopped them",
        ),
        # measured: every caller reads the held job as waiting and waits to lease it; let through
        # once the holder commits, one leases it again, and job_attempts' unique index refuses that
        (
            broken("\n           FOR UPDATE SKIP LOCKED", ""),
            "a second time, and job_attempts refused a second running attempt",
        ),
        (
            broken("         ORDER BY job_priority, job_create_timestamp\n", ""),
            "jobs are served ORDER BY job_priority, job_create_timestamp",
        ),
        (
            broken(ORDER, f"{ORDER} DESC"),
            "among equal priorities the oldest job (job_create_timestamp) goes first",
        ),
        (
            broken("\n           AND job_run_after <= clock_timestamp()", ""),
            "failed once and is not due for an hour: its job_run_after, the end of its backoff, is in the "
            "future",
        ),
        (
            broken("LIMIT batch_size", "LIMIT 1"),
            "got 1 job (",
        ),
        (
            broken("job_assigned_process_uuid IS NULL", "coalesce(job_assigned_process_uuid, '') = ''"),
            "3 claims scanned the whole of job_queue 3 times",
        ),
        # forced by the kit's hold, not left to callers that happen to meet
        (
            broken("FOR UPDATE SKIP LOCKED", "FOR SHARE SKIP LOCKED"),
            "two callers held one job with a shared lock (FOR SHARE lets them)",
        ),
        (
            broken("\n           FOR UPDATE SKIP LOCKED", "").replace(
                "<= clock_timestamp()\n", "<= clock_timestamp() AND pg_try_advisory_xact_lock(job_id)\n"
            ),
            "advisory locks: an advisory lock taken in the WHERE is taken on every row the plan reads",
        ),
    ],
    ids=["for-update-waits", "no-for-update", "no-order-by", "newest-first", "ignores-run-after", "limit-1",
         "coalesce-scans", "for-share", "advisory-try-lock"],
)  # fmt: skip
def test_a_broken_claim_is_refused_in_plain_words(claim, says):
    verdict = claim_jobs(claim)
    assert not verdict.holds
    assert says in str(verdict), str(verdict)
