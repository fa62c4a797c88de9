"""Lesson 10's claim: the pick that never waits and never doubles, raced by callers released together."""

from pgqueue import check
from tests.corpora import Right, Wrong, variant

JUDGE = check.skip_locked_claim

FINISHED = "job_finished IS NULL"
FREE = f"coalesce(job_assigned_process_uuid, '') = '' AND {FINISHED}"
MINE = "job_process_name = %(name)s AND job_process_version = %(version)s"
ORDER = "job_priority, job_create_timestamp"


def claim(
    lock: str = "FOR UPDATE SKIP LOCKED", free: str = FREE, mine: str = MINE, order: str = ORDER
) -> str:
    """The lesson's pick with `lock` where its TODO was, and its other parts as given."""
    return f"""
SELECT job_id FROM job_queue
 WHERE {free}
   AND {mine}
 ORDER BY {order}
 LIMIT 1
   {lock}
"""


WRONG = [
    Wrong(
        "positional-placeholders",
        claim(mine="job_process_name = %s AND job_process_version = %s"),
        "psycopg could not send your SQL",
    ),
    Wrong(
        "todo-left-as-it-is",
        claim("-- TODO: lock the row you pick, and pass over rows others have locked"),
        says="went to two callers",
    ),
    Wrong("for-update-waits", claim("FOR UPDATE"), says="callers waited for the lock"),
    Wrong("for-update-nowait", claim("FOR UPDATE NOWAIT"), says="NOWAIT raises an error"),
    Wrong(
        "for-share-skip-locked",
        claim("FOR SHARE SKIP LOCKED"),
        says="each took it FOR SHARE, a lock that does not conflict with another FOR SHARE",
    ),
    # it does lock the row, in a mode only FOR UPDATE conflicts with: every caller takes the same job
    Wrong(
        "for-key-share-skip-locked",
        claim("FOR KEY SHARE SKIP LOCKED"),
        says="each took it FOR KEY SHARE, a lock that does not conflict with another FOR KEY SHARE",
    ),
    # the try-lock in WHERE runs on every candidate the sort reads, so one caller locks them all
    Wrong(
        "advisory-try-lock-in-where",
        claim("", free=f"{FREE} AND pg_try_advisory_xact_lock(job_id)"),
        says="does not lock the job's row (it takes an advisory lock on the job's id",
    ),
    # the planner tries the lock on every candidate before the sort as well, and the row stays free
    Wrong(
        "advisory-session-try-lock-in-order",
        f"""
SELECT job_id FROM (
    SELECT job_id FROM job_queue WHERE {FREE} AND {MINE} ORDER BY {ORDER}
) candidates
 WHERE pg_try_advisory_lock(job_id)
 LIMIT 1
""",
        says="does not lock the job's row (it takes an advisory lock on the job's id",
    ),
    Wrong(
        "lock-on-the-pipe-job",
        """
SELECT j.job_id FROM job_queue j JOIN pipe_job_queue p USING (pipe_job_id)
 WHERE coalesce(j.job_assigned_process_uuid, '') = '' AND j.job_finished IS NULL
   AND j.job_process_name = %(name)s AND j.job_process_version = %(version)s
 ORDER BY j.job_priority, j.job_create_timestamp
 LIMIT 1
   FOR UPDATE OF p SKIP LOCKED
""",
        says="of pipe_job_queue instead; lock OF the job_queue row",
    ),
    Wrong(
        "no-limit-locks-every-row",
        variant(claim(), " LIMIT 1\n", ""),
        says="so the callers found them locked: lock only the row you return",
    ),
    # the subquery locks every free row it can and the outer query returns those it could not: none
    Wrong(
        "not-in-the-skipped-rows",
        f"""
SELECT job_id FROM job_queue
 WHERE {FREE} AND {MINE}
   AND job_id NOT IN (SELECT job_id FROM job_queue WHERE {FREE} AND {MINE} FOR UPDATE SKIP LOCKED)
 ORDER BY {ORDER}
 LIMIT 1
""",
        says="the rows it locks are not the rows it returns",
    ),
    # the pick is made before any lock, so every caller picks the held job and then skips it
    Wrong(
        "picked-in-a-subquery-then-locked",
        f"""
SELECT job_id FROM job_queue
 WHERE job_id = (SELECT job_id FROM job_queue WHERE {FREE} AND {MINE} ORDER BY {ORDER} LIMIT 1)
   FOR UPDATE SKIP LOCKED
""",
        says="they passed over a locked job and took none in its place",
    ),
    Wrong(
        "null-only-means-free",
        claim(free="job_assigned_process_uuid IS NULL AND job_finished IS NULL"),
        says="assigned to '', which means nobody",
    ),
    Wrong("priority-ignored", claim(order="job_create_timestamp"), says="where the most urgent free job was"),
    # the scene stores each pair of equal priority newer first, its free jobs by priority: a sort of
    # rows that come in sorted keeps their order, so the newer comes back first every time
    Wrong(
        "tie-break-missing",
        claim(order="job_priority"),
        says="two jobs of equal priority came back in the wrong order: the first pick was job",
    ),
    Wrong(
        "tie-break-missing-no-lock",
        claim("", order="job_priority"),
        says="two jobs of equal priority came back in the wrong order",
    ),
    Wrong(
        "newest-first-within-a-priority",
        claim(order="job_priority, job_create_timestamp DESC"),
        says="two jobs of equal priority came back in the wrong order",
    ),
    Wrong(
        "null-only-means-free-and-no-tie-break",
        claim(free="job_assigned_process_uuid IS NULL AND job_finished IS NULL", order="job_priority"),
        says="assigned to '', which means nobody",
    ),
    Wrong(
        "finished-jobs-taken",
        claim(free="coalesce(job_assigned_process_uuid, '') = ''"),
        says="which has finished",
    ),
    Wrong("any-process", claim(mine="true"), says="second_process"),
    Wrong(
        "or-without-parentheses",
        claim(free="job_assigned_process_uuid = '' OR job_assigned_process_uuid IS NULL AND " + FINISHED),
        says="AND binds tighter than OR",
    ),
    # written blind: NULL first, then '' AND the rest: every job with no holder comes through
    Wrong(
        "or-without-parentheses-null-first",
        claim(free="job_assigned_process_uuid IS NULL OR job_assigned_process_uuid = '' AND " + FINISHED),
        says="is an OR without parentheses letting every job with no holder through",
    ),
    Wrong("any-version", claim(mine="job_process_name = %(name)s"), says="compare job_process_version too"),
    Wrong("any-name", claim(mine="job_process_version = %(version)s"), says="compare job_process_name too"),
    Wrong("held-jobs-taken", claim(free="job_finished IS NULL"), says="which another worker holds"),
    # written blind (twice): the id is not the age; in each pair of equal priority the newer has the lower id
    Wrong(
        "ties-broken-by-id",
        claim(order="job_priority, job_id"),
        says="two jobs of equal priority came back in the wrong order",
    ),
]

RIGHT = [
    Right("for-update-skip-locked", claim()),
    Right("for-no-key-update-skip-locked", claim("FOR NO KEY UPDATE SKIP LOCKED")),
    Right(
        "subquery-nullif",
        f"""
SELECT job_id FROM job_queue
 WHERE job_id = (SELECT job_id FROM job_queue
                  WHERE nullif(job_assigned_process_uuid, '') IS NULL AND job_finished IS NOT TRUE
                    AND {MINE}
                  ORDER BY job_priority ASC, job_create_timestamp ASC
                  LIMIT 1
                    FOR UPDATE SKIP LOCKED)
""",
    ),
    Right(
        "cte-claiming-update-returning",
        f"""
WITH next AS (
    SELECT job_id FROM job_queue
     WHERE (job_assigned_process_uuid IS NULL OR job_assigned_process_uuid = '') AND job_finished IS NULL
       AND {MINE}
     ORDER BY {ORDER}
     LIMIT 1
       FOR UPDATE SKIP LOCKED
)
UPDATE job_queue j SET job_assigned_process_uuid = 'c0ffeec0ffee', job_assign_timestamp = clock_timestamp()
  FROM next WHERE j.job_id = next.job_id
RETURNING j.job_id
""",
    ),
]
