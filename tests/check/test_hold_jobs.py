"""Lesson 12's checker accepts the reference hold_jobs and names what each broken one gets wrong."""

import time

from pgqueue.check.hold_jobs import hold_jobs
from pgqueue.queues import labs

REFERENCE = str(labs.step("hardened", "find_job").excerpt("hold_jobs"))


def between(first: str, until: str) -> str:
    """The reference's text from `first` up to (not including) `until`."""
    start = REFERENCE.index(first)
    return REFERENCE[start : REFERENCE.index(until, start)]


LOCK = "    FOR j IN SELECT * FROM job_queue WHERE job_id = ANY (ids) ORDER BY job_id FOR UPDATE LOOP\n"
LOOP = between(LOCK, "    IF cardinality(found_ids)")  # the lock and the decision per job
TAIL = between("    IF done_before = cardinality(ids) THEN", "END $$;")  # what the caller is told
HOLDER = between(
    "        ELSIF j.job_assigned_process_uuid IS DISTINCT FROM p_uuid", "        END IF;\n    END LOOP;"
)
SKELETON = REFERENCE.replace(
    LOOP,
    "    -- TODO: lock the jobs `ids` in id order, one by one into j (FOR j IN SELECT ... LOOP);\n"
    "    -- add each to found_ids; count in done_before a job p_uuid finished before (job_finished,\n"
    "    -- and a 'succeeded' attempt of p_uuid in job_attempts); refuse (55000) a job finished by\n"
    "    -- another worker, dead-lettered, or not held by p_uuid\n",
).replace(
    TAIL,
    "    -- TODO: every job finished before by p_uuid: return false (a repeat, a no-op); only some of\n"
    "    -- them: refuse (55000); none: return true (the caller goes on)\n",
)


def broken(old: str, new: str) -> str:
    assert old in REFERENCE, old  # the reference still has what the broken version changes
    return REFERENCE.replace(old, new, 1)


def test_the_reference_holds_within_a_few_seconds():
    started = time.monotonic()
    verdict = hold_jobs(REFERENCE)
    assert verdict.holds, str(verdict)
    said = str(verdict)
    for sentence in (
        "refused with 55000",
        "refused with P0002",
        "refused with 22023",
        "has exactly one succeeded attempt (attempts: rescued, succeeded)",
        "waited for its lock",
        "no deadlock, and neither was refused",
    ):
        assert sentence in said, said
    assert time.monotonic() - started < 10, "the checker should take a few seconds on the reference"


def test_the_skeleton_is_refused_for_what_it_does():
    assert SKELETON != REFERENCE and LOCK not in SKELETON and "RETURN false;" not in SKELETON
    # unfilled, it compiles; it finds no job of those it is given, so the holder's own hand-over fails
    verdict = hold_jobs(SKELETON)
    assert not verdict.holds
    assert "yet its create_jobs was refused with P0002" in str(verdict), str(verdict)


def test_a_refusal_with_the_wrong_sqlstate_names_both_codes_not_the_null_comparison():
    # right in what it refuses, wrong in its code: 22023 (bad input) where 55000 is asked for
    assert HOLDER.count("refuse('55000'") == 1, HOLDER
    verdict = hold_jobs(broken(HOLDER, HOLDER.replace("refuse('55000'", "refuse('22023'")))
    said = str(verdict)
    assert not verdict.holds
    assert "which nobody holds since it was rescued from it, and it was refused with 22023" in said, said
    assert "the wrong SQLSTATE; the lesson asks for 55000 here (object_not_in_prerequisite" in said, said
    assert "IS DISTINCT FROM" not in said, said
