"""Lesson 12's checker accepts the reference rescue_jobs and names what each broken rescue gets wrong."""

import pytest

from pgqueue.check.rescue import rescue_jobs
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
HEARTBEAT = (
    "           AND (h.process_uuid IS NULL\n"
    "                OR h.last_beat_timestamp < clock_timestamp() - s.rescue_after\n"
    "                OR h.process_stopped_timestamp IS NOT NULL)\n"
)
ENDED = (
    "    ), ended AS (\n"
    "        UPDATE job_attempts a\n"
    "           SET attempt_ended = clock_timestamp(), outcome = 'rescued',\n"
    "               error = 'its worker went silent'\n"
    "          FROM lost\n"
    "         WHERE a.job_id = lost.job_id AND a.attempt_ended IS NULL\n"
)
DEAD = (
    "           SET job_assigned_process_uuid = NULL, job_assign_timestamp = NULL,\n"
    "               job_dead_timestamp = CASE WHEN j.job_attempts >= s.max_attempts"
    " THEN clock_timestamp() END,\n"
    "               job_error = CASE WHEN j.job_attempts >= s.max_attempts\n"
    "                                THEN format('its worker went silent in each of %s attempts',"
    " j.job_attempts)\n"
    "                           END\n"
)
WOKEN = (
    "    ), woken AS (\n"
    "        SELECT pg_notify(wake_channel(job_process_name, job_process_version), min(job_id)::text)\n"
    "          FROM back WHERE job_dead_timestamp IS NULL\n"
    "         GROUP BY job_process_name, job_process_version\n"
)
COUNTED = "SELECT (SELECT count(*) FROM back), (SELECT count(*) FROM woken) INTO freed, notified;"


def broken(*changes: tuple[str, str]) -> str:
    text = REFERENCE
    for old, new in changes:
        assert old in text, old  # the reference still has what the broken version removes
        text = text.replace(old, new)
    return text


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


@pytest.mark.parametrize(
    ("rescue", "says"),
    [
        # the job goes back, but the attempt of the worker it was taken from stays open
        (broken((ENDED, "")), "attempt at it is still open: end it (attempt_ended) with outcome 'rescued'"),
        (broken(("outcome = 'rescued'", "outcome = 'failed'")), "attempt at it ended 'failed'"),
        # waits for the row a late finish holds: with lock_timeout 2 s it gives up
        (
            broken(("FOR UPDATE OF j SKIP LOCKED", "FOR UPDATE OF j")),
            "and gave up (lock_timeout 2 s): FOR UPDATE SKIP LOCKED passes over a row",
        ),
        # every leased job looks lost, however recently its worker beat
        (broken((HEARTBEAT, "")), "whose last heartbeat was"),
        # the comparison the wrong way round: the live lose their jobs, the silent keep theirs
        (
            broken(("last_beat_timestamp < clock_timestamp()", "last_beat_timestamp > clock_timestamp()")),
            "is still leased to it: a worker whose last heartbeat is older than rescue_after",
        ),
        (
            broken((DEAD, "           SET job_assigned_process_uuid = NULL, job_assign_timestamp = NULL\n")),
            "had used 2 of its 2 attempts (max_attempts) when worker",
        ),
        (broken((WOKEN, ""), (COUNTED, "SELECT count(*) INTO freed FROM back;")), "nothing was heard on"),
        # every attempt of a lost job ended again, the one that had failed before included
        (
            broken((" AND a.attempt_ended IS NULL\n", "\n")),
            "which had ended 'failed' before it ran: it changed its attempt_ended, outcome ('failed' became "
            "'rescued')",
        ),
        # the kill switch taken for death: the worker beats, and is finishing its job
        (
            broken((HEARTBEAT, HEARTBEAT.replace(" IS NOT NULL)", " IS NOT NULL OR h.process_kill_switch)"))),
            "whose kill switch is set but which beat",
        ),
    ],
    ids=[
        "attempt-open",
        "attempt-failed",
        "waits-for-lock",
        "ignores-heartbeat",
        "wrong-way",
        "never-dead",
        "no-notify",
        "rewrites-ended-attempts",
        "kill-switch-as-death",
    ],
)
def test_a_broken_rescue_is_refused_in_plain_words(rescue, says):
    verdict = rescue_jobs(rescue)
    assert not verdict.holds
    assert says in str(verdict), str(verdict)
