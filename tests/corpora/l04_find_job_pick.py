"""Lesson 04's pick: the oldest of the best-priority waiting jobs of this process and version, locked."""

import functools

from pgqueue import check
from pgqueue.queues import labs
from tests.corpora import Right, Wrong, variant

JUDGE = check.find_job_pick

REFERENCE = str(labs.step("single-call", "find_job").excerpt("find_job"))
WAITS = "coalesce(job_assigned_process_uuid, '') = ''"
UNFINISHED = "AND job_finished IS NULL"
ORDER = "ORDER BY job_priority, job_create_timestamp"
LOCK = "     LIMIT 1\n       FOR UPDATE;"
PICK = REFERENCE[
    REFERENCE.index("    SELECT * INTO job FROM job_queue") : REFERENCE.index("    IF NOT FOUND THEN")
]
CLAIM = REFERENCE[
    REFERENCE.index("    BEGIN\n        INSERT INTO job_queue_claim") : REFERENCE.index(
        "    UPDATE job_queue SET"
    )
]


changed = functools.partial(variant, REFERENCE)  # the reference with one change


def pick(new: str) -> str:
    """The reference with another pick in the TODO's place."""
    return changed(PICK, new)


WRONG = [
    Wrong(
        "ignores-version",
        changed(" AND job_process_version = p_version", ""),
        says="its own name and version",
        also=("call 1 got job 3 (picker_",),
    ),
    Wrong("ignores-name", changed("job_process_name = p_name AND ", ""), says="its own name and version"),
    Wrong(
        "hard-coded-process",
        changed(
            "job_process_name = p_name AND job_process_version = p_version",
            "job_process_name = 'first_process' AND job_process_version = '1.9.2'",
        ),
        says="answered 'No job found' while",
    ),
    Wrong(
        "forgets-finished",
        changed(f"       {UNFINISHED}\n", ""),
        says="which was finished",
        also=("call 1 got job 1 (picker_",),
    ),
    Wrong(
        "takes-taken",
        changed(f"{WAITS}\n       {UNFINISHED}", "job_finished IS NULL"),
        says="which worker busy0worker had taken already",
    ),
    # NULL against '': the original marks "no worker" with either
    Wrong(
        "null-only-no-worker",
        changed(WAITS, "job_assigned_process_uuid IS NULL"),
        says="its job_assigned_process_uuid is '' (empty), which means no worker, as NULL does",
    ),
    Wrong(
        "empty-only-no-worker",
        changed(WAITS, "job_assigned_process_uuid = ''"),
        says="the lowest job_priority goes first",
    ),
    # NULL against false: a waiting job's job_finished is NULL, not false
    Wrong(
        "unfinished-is-false",
        changed(UNFINISHED, "AND job_finished = false"),
        says="so it looks for job_finished = false, which no job has: test job_finished IS NULL",
    ),
    # the same, written as a boolean: NOT NULL is NULL, so no waiting job passes either
    Wrong(
        "not-job-finished",
        changed(UNFINISHED, "AND NOT job_finished"),
        says="so it looks for job_finished = false, which no job has: test job_finished IS NULL",
    ),
    Wrong(
        "newest-first",
        changed(ORDER, "ORDER BY job_priority, job_create_timestamp DESC"),
        says="waited: among equal priorities the oldest job",
    ),
    Wrong(
        "highest-priority-first",
        changed(ORDER, "ORDER BY job_priority DESC, job_create_timestamp"),
        says="the lowest job_priority goes first (50 before 200)",
    ),
    Wrong(
        "age-only",
        changed(ORDER, "ORDER BY job_create_timestamp"),
        says="the lowest job_priority goes first (50 before 200)",
    ),
    Wrong(
        "id-breaks-ties",
        changed(ORDER, "ORDER BY job_priority, job_id"),
        says="among equal priorities the oldest job",
    ),
    Wrong(
        "empty-array-for-no-job",
        changed("RETURN 'No job found';", "RETURN '[]';"),
        says="expected 'No job found'",
    ),
    # measured: without FOR UPDATE no job goes twice (the claim's key refuses the second),
    # but racing callers read the same job and all but one are told to retry
    Wrong(
        "no-row-lock",
        changed(LOCK, "     LIMIT 1;"),
        says="caller B was told 'Retry, I lost the job race' although another job waited: B's pick read the "
        "job A was taking before any lock of it",
    ),
    # a lock taken in a statement after the pick: B waits for it, but has read its job already
    Wrong(
        "lock-in-a-second-statement",
        changed(LOCK, "     LIMIT 1;\n    PERFORM 1 FROM job_queue WHERE job_id = job.job_id FOR UPDATE;"),
        says="a lock in a statement of its own comes too late",
    ),
    # a try-lock never waits: the second caller, finding the first one's job locked, gets nothing
    Wrong(
        "advisory-try-lock",
        variant(
            changed(LOCK, "     LIMIT 1;"),
            "     ORDER BY job_priority, job_create_timestamp\n     LIMIT 1;",
            "       AND pg_try_advisory_xact_lock(job_id)\n     ORDER BY job_priority, job_create_timestamp\n"
            "     LIMIT 1;",
        ),
        says="answered 'No job found' while jobs waited",
        also=("one got no job, though another waited",),
    ),
    Wrong(
        "for-share",
        changed(LOCK, "     LIMIT 1\n       FOR SHARE;"),
        says="a shared lock (FOR SHARE, FOR KEY SHARE) lets two callers lock the same row",
    ),
    Wrong(
        "nowait",
        changed(LOCK, "     LIMIT 1\n       FOR UPDATE NOWAIT;"),
        says='could not obtain lock on row in relation "job_queue": NOWAIT makes a caller fail',
    ),
    # no claim and no lock: a second caller gets the job the first one holds
    Wrong(
        "no-claim-no-lock",
        variant(changed(LOCK, "     LIMIT 1;"), CLAIM, ""),
        says="one job must go to one worker only",
    ),
    # the pick is right, but the update that takes the job forgets who took it
    Wrong(
        "update-forgets-the-worker",
        changed("SET job_assigned_process_uuid = p_uuid, job_assign_timestamp", "SET job_assign_timestamp"),
        says="but the table says None has it",
    ),
    # a TODO no longer refuses an answer by itself: without its ORDER BY this pick hands out the
    # wrong job first, and that is what is said
    Wrong(
        "the-skeleton-with-its-todo",
        changed(ORDER, "-- TODO: which job?"),
        says="the lowest job_priority goes first",
    ),
]

# written blind: an advisory lock keyed by the caller, which keeps no other caller out
WRONG.append(
    Wrong(
        "advisory-lock-keyed-by-the-caller",
        pick("    PERFORM pg_advisory_xact_lock(hashtext(p_uuid));\n" + PICK.replace(LOCK, "     LIMIT 1;")),
        "the two took locks of different keys",
    )
)

RIGHT = [
    # a loop over the locked rows of the sort, left after the first: only that row is locked
    Right(
        "plpgsql-for-loop-exit",
        pick("""    FOR job IN SELECT * FROM job_queue
                 WHERE coalesce(job_assigned_process_uuid, '') = '' AND job_finished IS NULL
                   AND job_process_name = p_name AND job_process_version = p_version
                 ORDER BY job_priority, job_create_timestamp
                   FOR UPDATE LOOP
        EXIT;
    END LOOP;
"""),
    ),
    Right("reference", REFERENCE),
    Right("skip-locked", changed(LOCK, "     LIMIT 1\n       FOR UPDATE SKIP LOCKED;")),
    Right("for-no-key-update", changed(LOCK, "     LIMIT 1\n       FOR NO KEY UPDATE;")),
    Right(
        "subquery-pick-explicit-nulls",
        pick("""    SELECT * INTO job FROM job_queue
     WHERE job_id = (SELECT job_id FROM job_queue
                      WHERE (job_assigned_process_uuid IS NULL OR job_assigned_process_uuid = '')
                        AND job_finished IS NULL
                        AND (job_process_name, job_process_version) = (p_name, p_version)
                      ORDER BY job_priority ASC, job_create_timestamp ASC NULLS LAST
                      LIMIT 1
                        FOR UPDATE);
"""),
    ),
    Right(
        "nullif-and-fetch-first",
        pick("""    SELECT * INTO job FROM job_queue
     WHERE nullif(job_assigned_process_uuid, '') IS NULL
       AND job_finished IS NULL
       AND job_process_version = p_version AND job_process_name = p_name
     ORDER BY job_priority, job_create_timestamp
     FETCH FIRST 1 ROW ONLY
       FOR UPDATE;
"""),
    ),
]
