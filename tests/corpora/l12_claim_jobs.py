"""Lesson 12's claim_jobs: claims wrong by their lock, filter, order or batch; right ones in other styles."""

import textwrap

from pgqueue import check
from tests.corpora import Right, Wrong, variant

JUDGE = check.claim_jobs

SIGNATURE = """
CREATE FUNCTION claim_jobs(p_uuid varchar, p_name varchar, p_version varchar, batch_size integer)
"""
SELECT = "        SELECT job_id FROM job_queue\n"
HEAD = SIGNATURE + "RETURNS json LANGUAGE sql AS $$\n    SELECT lease_jobs(p_uuid, ARRAY(\n" + SELECT
WAITS = """\
         WHERE job_assigned_process_uuid IS NULL AND job_finished IS NULL AND job_dead_timestamp IS NULL
           AND job_process_name = p_name AND job_process_version = p_version
           AND job_run_after <= clock_timestamp()
"""
ORDER = "         ORDER BY job_priority, job_create_timestamp\n"
LIMIT = "         LIMIT batch_size\n"
LOCK = "           FOR UPDATE SKIP LOCKED"
TAIL = "))\n$$;\n"
REFERENCE = HEAD + WAITS + ORDER + LIMIT + LOCK + TAIL
# the reference's pick of waiting jobs, as other styles wrap it
PICK = SELECT + WAITS + ORDER + LIMIT + LOCK


def claim(*, waits: str = WAITS, order: str = ORDER, limit: str = LIMIT, lock: str = LOCK) -> str:
    """The reference claim with one of its parts written otherwise."""
    return HEAD + waits + order + limit + lock + TAIL


def without(condition: str) -> str:
    """The reference's WHERE without one condition."""
    return variant(WAITS, condition, "")


ADVISORY = WAITS + "           AND pg_try_advisory_xact_lock(job_id)\n"

OWN_LEASE = (
    SIGNATURE
    + """RETURNS json LANGUAGE plpgsql AS $$
DECLARE
    leased json;
BEGIN
    WITH picked AS (
"""
    + PICK
    + """
    ), taken AS (
        UPDATE job_queue j
           SET job_assigned_process_uuid = p_uuid, job_assign_timestamp = clock_timestamp(),
               job_attempts = j.job_attempts + 1
          FROM picked
         WHERE j.job_id = picked.job_id
        RETURNING j.*
    ), tried AS (
        INSERT INTO job_attempts (job_id, process_uuid) SELECT job_id, p_uuid FROM taken
    )
    SELECT json_agg(row_to_json(taken) ORDER BY job_priority, job_create_timestamp) INTO leased FROM taken;
    RETURN leased;
END $$;
"""
)
COUNTED = "               job_attempts = j.job_attempts + 1\n"
RECORDED = """\
    ), tried AS (
        INSERT INTO job_attempts (job_id, process_uuid) SELECT job_id, p_uuid FROM taken
"""
# the pick as a subquery of the UPDATE that leases: one statement, as a learner writes it
IN_SUBQUERY = (
    SIGNATURE
    + """RETURNS json LANGUAGE sql AS $$
    WITH taken AS (
        UPDATE job_queue j
           SET job_assigned_process_uuid = p_uuid, job_assign_timestamp = clock_timestamp(),
               job_attempts = j.job_attempts + 1
         WHERE j.job_id IN (
"""
    + textwrap.indent(PICK, "    ")
    + """)
        RETURNING j.*
    ), tried AS (
        INSERT INTO job_attempts (job_id, process_uuid) SELECT job_id, p_uuid FROM taken
    )
    SELECT json_agg(row_to_json(taken) ORDER BY job_priority, job_create_timestamp) FROM taken
$$;
"""
)
FORGETS_THE_ATTEMPT = variant(
    variant(OWN_LEASE, "clock_timestamp(),\n" + COUNTED, "clock_timestamp()\n"), RECORDED, ""
)

WRONG = [
    # written blind: every waiting job locked, then a slice of batch_size leased; the others stay locked
    Wrong(
        "locks-every-waiting-job-then-slices",
        SIGNATURE
        + """RETURNS json LANGUAGE sql AS $$
    SELECT lease_jobs(p_uuid, (ARRAY(
        SELECT job_id FROM job_queue
         WHERE job_assigned_process_uuid IS NULL AND job_finished IS NULL AND job_dead_timestamp IS NULL
           AND job_run_after <= clock_timestamp()
           AND job_process_name = p_name AND job_process_version = p_version
         ORDER BY job_priority, job_create_timestamp
         FOR UPDATE SKIP LOCKED
    ))[1:batch_size])
$$;
""",
        says="the one it took among them), which SKIP LOCKED then passes over",
    ),
    Wrong(
        "own-lease-forgets-the-attempt",
        FORGETS_THE_ATTEMPT,
        says="each claim counts one attempt",
    ),
    Wrong(
        "nobody-written-as-empty-string",
        claim(waits=variant(WAITS, "job_assigned_process_uuid IS NULL", "job_assigned_process_uuid = ''")),
        says="your WHERE lets none of them through: a NULL is not false, nor ''",
    ),
    Wrong(
        "unfinished-written-as-false",
        claim(waits=variant(WAITS, "job_finished IS NULL", "job_finished = false")),
        says="your WHERE lets none of them through",
    ),
    # measured by the reviewer: accepted before the free races, 52 of 3,001 claims took a held job
    Wrong(
        "advisory-try-lock-instead-of-row-lock",
        claim(waits=ADVISORY, lock=""),
        # refused by whichever schedule meets it first: the free race (a lease doubled) or the held one
        says="an advisory lock taken in the WHERE",
    ),
    Wrong(
        "session-level-advisory-lock",
        claim(waits=WAITS + "           AND pg_try_advisory_lock(job_id)\n", lock=""),
        says="lasts until that connection unlocks it or closes",
    ),
    Wrong(
        "advisory-lock-on-the-process-name",
        claim(waits=WAITS + "           AND pg_try_advisory_xact_lock(hashtext(p_name))\n", lock=""),
        says="only 0 got a job, though",
    ),
    Wrong("no-lock", claim(lock=""), says="a second time, and job_attempts refused a second running attempt"),
    # the subquery's snapshot still shows a job another caller leased meanwhile as waiting
    Wrong(
        "update-where-in-an-unlocked-subquery",
        variant(IN_SUBQUERY, "\n               FOR UPDATE SKIP LOCKED)", ")"),
        says="job_attempts refused a second running attempt",
    ),
    Wrong(
        "for-update-waits",
        claim(lock="           FOR UPDATE"),
        says="of them waited for the held job's lock until lock_timeout (2 s) stopped them",
    ),
    Wrong("for-update-nowait", claim(lock="           FOR UPDATE NOWAIT"), says="NOWAIT raises an error"),
    Wrong(
        "for-share-skip-locked",
        claim(lock="           FOR SHARE SKIP LOCKED"),
        says="two callers held one job with a shared lock (FOR SHARE lets them)",
    ),
    Wrong("no-order-by", claim(order=""), says="jobs are served ORDER BY job_priority, job_create_timestamp"),
    Wrong(
        "highest-priority-first",
        claim(order="         ORDER BY job_priority DESC, job_create_timestamp\n"),
        says="the lowest job_priority goes first",
    ),
    Wrong(
        "newest-first",
        claim(order="         ORDER BY job_priority, job_create_timestamp DESC\n"),
        says="among equal priorities the oldest job (job_create_timestamp) goes first",
    ),
    Wrong(
        "ordered-by-id-not-age",
        claim(order="         ORDER BY job_priority, job_id\n"),
        says="among equal priorities the oldest job (job_create_timestamp) goes first",
    ),
    Wrong(
        "batch-size-ignored",
        claim(limit="         LIMIT 1\n"),
        says="a call takes up to batch_size jobs at once",
        also=("got 1 job (",),
    ),
    Wrong(
        "batch-size-hard-coded",
        claim(limit="         LIMIT 4\n"),
        says="batch_size is the most one call may take",
    ),
    Wrong(
        "takes-leased-jobs",
        claim(waits=without("job_assigned_process_uuid IS NULL AND ")),
        says="is leased to worker",
    ),
    Wrong("takes-finished-jobs", claim(waits=without("job_finished IS NULL AND ")), says="is finished"),
    Wrong(
        "takes-dead-lettered-jobs",
        claim(waits=without(" AND job_dead_timestamp IS NULL")),
        says="was dead-lettered after five failed attempts",
    ),
    Wrong(
        "takes-jobs-still-backing-off",
        claim(waits=without("           AND job_run_after <= clock_timestamp()\n")),
        says="failed once and is not due for an hour: its job_run_after, the end of its backoff, is "
        "in the future",
    ),
    Wrong(
        "takes-other-versions",
        claim(waits=without(" AND job_process_version = p_version")),
        says="a worker of checked_process 1.0.0 may get only its own jobs",
    ),
    Wrong(
        "coalesce-hides-the-index",
        claim(
            waits=variant(
                WAITS, "job_assigned_process_uuid IS NULL", "coalesce(job_assigned_process_uuid, '') = ''"
            )
        ),
        says="3 claims scanned the whole of job_queue 3 times",
    ),
]

RIGHT = [
    Right("reference-sql-array", REFERENCE),
    Right("plpgsql-own-lease-and-attempt", OWN_LEASE),
    Right("update-where-in-a-locked-subquery", IN_SUBQUERY),
    Right("for-no-key-update-skip-locked", claim(lock="           FOR NO KEY UPDATE SKIP LOCKED")),
    Right(
        "tie-broken-by-id",
        claim(order="         ORDER BY job_priority ASC, job_create_timestamp ASC, job_id ASC\n"),
    ),
    Right(
        "plpgsql-array-agg",
        """
CREATE OR REPLACE FUNCTION claim_jobs(p_uuid varchar, p_name varchar, p_version varchar, batch_size integer)
RETURNS json LANGUAGE plpgsql AS $$
DECLARE
    picked integer[];
BEGIN
    -- TODO left in a comment: judged on what the claim does
    SELECT array_agg(job_id) INTO picked FROM (
        SELECT job_id FROM job_queue
         WHERE job_process_name = p_name AND job_process_version = p_version
           AND job_assigned_process_uuid IS NULL AND job_finished IS NULL AND job_dead_timestamp IS NULL
           AND job_run_after <= clock_timestamp()
         ORDER BY job_priority, job_create_timestamp
         LIMIT batch_size
           FOR UPDATE SKIP LOCKED) best;
    IF picked IS NULL THEN
        RETURN NULL;
    END IF;
    RETURN lease_jobs(p_uuid, picked);
END $$;
""",
    ),
    Right(
        "cte-then-lease",
        SIGNATURE
        + "RETURNS json LANGUAGE sql AS $$\n    WITH best AS (\n"
        + PICK
        + "\n    )\n    SELECT lease_jobs(p_uuid, ARRAY(SELECT job_id FROM best))\n$$;\n",
    ),
]
