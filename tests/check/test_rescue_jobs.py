"""Lesson 12's checker accepts the reference rescue_jobs and names what each broken rescue gets wrong."""

from pgqueue.check.rescue_jobs import rescue_jobs
from pgqueue.queues import labs

REFERENCE = str(labs.step("hardened", "find_job").excerpt("rescue_jobs"))
# the learner's starting point: the reference up to its first statement, then what to write
SKELETON = (
    REFERENCE[: REFERENCE.index("    SELECT array_agg(job_id) INTO candidates")]
    + "    -- TODO: write the two statements. The first locks (FOR UPDATE OF j SKIP LOCKED) the leased,\n"
    "    -- unfinished jobs whose worker has no heartbeat row, last beat before clock_timestamp() -\n"
    "    -- s.rescue_after, or stopped, into `candidates`. The second re-checks them, ends their open\n"
    "    -- attempts 'rescued', gives them back (dead-letters those with job_attempts >= s.max_attempts,\n"
    "    -- with a job_error), wakes their workers (pg_notify on wake_channel, a job id as payload),\n"
    "    -- and counts them into `freed`.\n"
    "    RETURN freed;\nEND $$;\n"
)


def test_the_reference_rescue_holds():
    verdict = rescue_jobs(REFERENCE)
    assert verdict.holds, str(verdict)
    assert len(verdict.held) >= 15, str(verdict)  # every check ran
    assert "passed over it without waiting" in str(verdict)
    assert "beating with its kill switch set, was left to it" in str(verdict)
    assert "(1 failed, 1 rescued, 1 succeeded) as they were" in str(verdict)
    assert "your rescue then left all three as they were, and returned 0" in str(verdict)


def test_the_skeleton_is_refused_for_what_it_does():
    # unfilled, it compiles and returns a NULL count: judged on that, not on its TODO
    verdict = rescue_jobs(SKELETON)
    assert not verdict.holds
    assert "your rescue_jobs returned None: it returns how many jobs it freed" in str(verdict), str(verdict)
