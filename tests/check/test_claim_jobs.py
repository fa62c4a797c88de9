"""Lesson 12's checker accepts the hardened claim_jobs and names what each broken claim gets wrong."""

import random

import pytest

from pgqueue.check.claim_calls import waiting_order
from pgqueue.check.claim_jobs import claim_jobs
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


@pytest.mark.timeout(60)
def test_every_draw_of_the_waiting_order_is_seen_by_an_order_by_age_alone():
    # a draw whose jobs all shared one priority could never disagree with their ages: the redraw
    # looped for good on such a seed, which this catches by the timeout
    for seed in range(20_000):
        placed, batches = waiting_order(random.Random(seed))
        served = sorted(placed, key=lambda pa: (pa[0], -pa[1]))
        by_age = sorted(placed, key=lambda pa: -pa[1])
        first = batches[0]
        assert set(by_age[:first]) != set(served[:first]) or by_age[first] != served[first], seed
