"""Lesson 12's capstone: piece sets a learner plausibly brings to check.capstone, run in a short round.

Each wrong set breaks one piece of the four and brings it alone (the others run as the kit's);
each right one writes a piece in another style, and one brings the four as the kit writes them.
Each piece brought goes through lesson 12's own check of it first (`capstone.race_checks`): its
forced schedules meet every time the moments a round meets by chance. The round
is shorter than the lesson's (`ROUND`): five requests, three seconds of kills (the forced scenes
run besides).
"""

from __future__ import annotations

import pytest

from pgqueue import check
from pgqueue.lab import chaos
from pgqueue.queues import labs
from tests.corpora import Right, Wrong, variant
from tests.corpora import l12_claim_jobs as claim_jobs

ROUND = {"requests": 5, "seconds": 3.0, "drain": 8.0}
MARKS = (pytest.mark.chaos,)  # rounds of SIGKILLs: once per CI run, the server adds nothing


def JUDGE(pieces: dict[str, str]):  # noqa: N802 - the harness calls every corpus's judge JUDGE
    """The verdict of a short round on these pieces."""
    return check.capstone(pieces, **ROUND).verdict


def _routine(text: str, name: str, up_to: str) -> str:
    start = text.index(f"CREATE FUNCTION {name}(")
    return text[start : text.index(up_to, start)]


FIND_JOB, GATE = labs.step(chaos.POC, "find_job").sql, labs.step(chaos.POC, "order_gating").sql
REFERENCE = {
    "claim_jobs": _routine(FIND_JOB, "claim_jobs", "-- hardened: claim a whole"),
    "rescue_jobs": _routine(FIND_JOB, "rescue_jobs", "-- hardened: lock jobs"),
    "hold_jobs": _routine(FIND_JOB, "hold_jobs", "-- hardened: jobs `ids`"),
    "pipe_job_takes_turn": _routine(GATE, "pipe_job_takes_turn", "-- The request's pipe jobs"),
}


def _pieces(
    routine: str | None = None, old: str = "", new: str = "", text: str | None = None
) -> dict[str, str]:
    """The reference pieces, or `routine` alone, changed: `old` replaced by `new`, or written as
    `text` (the other pieces run as the kit's, as a learner's skeleton does)."""
    if routine is None:
        return dict(REFERENCE)
    if text is None:
        assert old in REFERENCE[routine], (routine, old)  # the reference still has what is changed
        text = REFERENCE[routine].replace(old, new)
    return {routine: text}


LOST = """(h.process_uuid IS NULL
                OR h.last_beat_timestamp < clock_timestamp() - s.rescue_after
                OR h.process_stopped_timestamp IS NOT NULL)"""

NO_RESCUE = """
CREATE FUNCTION rescue_jobs() RETURNS integer LANGUAGE sql AS $$ SELECT 0 $$;
"""

NO_GATE_LOCK = """
CREATE FUNCTION pipe_job_takes_turn() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RETURN NEW;  -- a finish and an insert read the gate; they only need to see each other... or not
END $$;

CREATE TRIGGER pipe_job_takes_turn
BEFORE INSERT OR UPDATE OF pipe_job_finished ON pipe_job_queue
FOR EACH ROW EXECUTE FUNCTION pipe_job_takes_turn();
"""

SESSION_GATE = """
CREATE FUNCTION pipe_job_takes_turn() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_lock(hashtext('order gate'), NEW.request_id);  -- held until the session ends
    RETURN NEW;
END $$;

CREATE TRIGGER pipe_job_takes_turn
BEFORE INSERT OR UPDATE OF pipe_job_finished ON pipe_job_queue
FOR EACH ROW EXECUTE FUNCTION pipe_job_takes_turn();
"""

# lesson 12's claim pick, locked FOR NO KEY UPDATE, in a plpgsql CTE
PLPGSQL_CTE_CLAIM = (
    claim_jobs.SIGNATURE
    + """RETURNS json LANGUAGE plpgsql AS $$
DECLARE
    picked integer[];
BEGIN
    WITH waiting AS (
"""
    + variant(claim_jobs.PICK, "FOR UPDATE", "FOR NO KEY UPDATE")
    + """
    )
    SELECT array_agg(job_id) INTO picked FROM waiting;
    RETURN lease_jobs(p_uuid, coalesce(picked, '{}'));
END $$;
"""
)

ONE_KEY_GATE = """
CREATE FUNCTION pipe_job_takes_turn() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(NEW.request_id);  -- one key per request, released at commit
    RETURN NEW;
END $$;

CREATE TRIGGER pipe_job_takes_turn
BEFORE UPDATE OF pipe_job_finished OR INSERT ON pipe_job_queue
FOR EACH ROW EXECUTE FUNCTION pipe_job_takes_turn();
"""

WRONG = [
    Wrong(
        "rescue-frees-live-workers-jobs",
        _pieces("rescue_jobs", LOST, "true"),
        says="your rescue_jobs frees jobs of live workers",
    ),
    Wrong(
        "claim-without-a-row-lock",
        _pieces("claim_jobs", "\n           FOR UPDATE SKIP LOCKED", ""),
        says="without FOR UPDATE the SELECT reads a job another caller is leasing as still waiting",
    ),
    Wrong(
        "claim-without-skip-locked-serialises",
        _pieces("claim_jobs", "FOR UPDATE SKIP LOCKED", "FOR UPDATE"),
        says="waited for the held job's lock until lock_timeout",
    ),
    Wrong(
        "hold-without-the-holder-check",
        _pieces(
            "hold_jobs",
            """        ELSIF j.job_assigned_process_uuid IS DISTINCT FROM p_uuid THEN
            PERFORM refuse('55000', format('%s: job %s is not held by %s (held by %s): it was rescued from '
                                           'a silent worker, or never claimed', what, j.job_id, p_uuid,
                                           coalesce(j.job_assigned_process_uuid, 'nobody')));
""",
            "",
        ),
        says="lets a worker that no longer holds a job hand it over",
    ),
    Wrong(
        "gate-with-no-lock",
        _pieces("pipe_job_takes_turn", text=NO_GATE_LOCK),
        says="finished without waiting, and order-2 pipe job",
    ),
    Wrong(
        "rescue-never-dead-letters",
        _pieces(
            "rescue_jobs", "CASE WHEN j.job_attempts >= s.max_attempts THEN clock_timestamp() END", "NULL"
        ),
        says="never dead-letters a job whose workers keep dying",
    ),
    Wrong(
        "rescue-dead-letters-one-attempt-late",
        _pieces("rescue_jobs", ">= s.max_attempts", "> s.max_attempts"),
        says="your rescue_jobs lets a job run one attempt more than max_attempts before it dead-letters it",
    ),
    Wrong(
        "claim-takes-dead-lettered-jobs",
        _pieces("claim_jobs", " AND job_dead_timestamp IS NULL", ""),
        says="your claim_jobs takes dead-lettered jobs",
    ),
    Wrong(
        "gate-with-a-session-level-lock",
        _pieces("pipe_job_takes_turn", text=SESSION_GATE),
        says="nothing the round did stops",
    ),
    Wrong("rescue-never-rescues", _pieces("rescue_jobs", text=NO_RESCUE), says="leases were left behind"),
    Wrong(
        "claim-ignores-backoff",
        _pieces("claim_jobs", "\n           AND job_run_after <= clock_timestamp()", ""),
        says="takes jobs that are not due yet",
    ),
]

RIGHT = [
    Right("the-kits-pieces-as-written", _pieces()),
    Right("plpgsql-claim-with-a-cte-and-no-key-lock", _pieces("claim_jobs", text=PLPGSQL_CTE_CLAIM)),
    Right("gate-locked-by-one-key-per-request", _pieces("pipe_job_takes_turn", text=ONE_KEY_GATE)),
    Right(
        "rescue-locking-for-no-key-update",
        _pieces("rescue_jobs", "FOR UPDATE OF j SKIP LOCKED", "FOR NO KEY UPDATE OF j SKIP LOCKED"),
    ),
]
