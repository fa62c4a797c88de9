"""Lesson 12's rescue_jobs: rescues wrong by their join, lock, threshold, second statement, history or
kill switch; right ones."""

import functools

from pgqueue import check
from pgqueue.lab import chaos
from pgqueue.queues import labs
from tests.corpora import Right, Wrong, cut, uncommented, variant

JUDGE = check.rescue_jobs

# the kit's hardened rescue_jobs without its comments, cut into the parts wrong answers change
KIT = uncommented(labs.step(chaos.POC, "find_job").excerpt("rescue_jobs"))
part = functools.partial(cut, KIT)  # the kit's rescue_jobs from one line's start up to another's

LOST = """\
           AND (h.process_uuid IS NULL
                OR h.last_beat_timestamp < clock_timestamp() - s.rescue_after
                OR h.process_stopped_timestamp IS NOT NULL)
"""
HEAD = "\n" + part("CREATE FUNCTION", "    SELECT array_agg")
FIRST = variant(part("    SELECT array_agg", "    WITH lost AS ("), LOST, "{lost}")
RECHECK = variant(part("    WITH lost AS (", "    ), ended AS ("), LOST, "{lost}")
ENDED = part("    ), ended AS (", "    ), back AS (")
BACK = part("    ), back AS (", "    ), woken AS (")
WOKEN = part("    ), woken AS (")


def rescue(*, lost: str = LOST, first: str = FIRST, recheck: str = RECHECK, changes=()) -> str:
    """The reference rescue with its "lost" condition, a statement, or a few words written otherwise."""
    text = HEAD + first.format(lost=lost) + recheck.format(lost=lost) + ENDED + BACK + WOKEN
    for old, new in changes:
        assert old in text, old
        text = text.replace(old, new)  # everywhere: the first statement and its recheck alike
    return text


REFERENCE = rescue()
BEAT = "h.last_beat_timestamp < clock_timestamp() - s.rescue_after"
TRUSTS_THE_FIRST = "    WITH lost AS (SELECT unnest(candidates) AS job_id\n"
# current_timestamp is no function: the judge holds the rescue at its interval arithmetic instead
CURRENT = variant(LOST, BEAT, "h.last_beat_timestamp + s.rescue_after < current_timestamp")
# the kill switch read as death: a worker asked to stop still beats and is finishing its job
KILLED = variant(
    LOST,
    "                OR h.process_stopped_timestamp IS NOT NULL)",
    "                OR h.process_stopped_timestamp IS NOT NULL\n                OR h.process_kill_switch)",
)
ONE_STATEMENT = """\
    WITH lost AS (
        SELECT j.job_id FROM job_queue j
          LEFT JOIN process_heartbeats h ON h.process_uuid = j.job_assigned_process_uuid
         WHERE j.job_assigned_process_uuid IS NOT NULL AND j.job_finished IS NULL
{lost}           FOR UPDATE OF j SKIP LOCKED
"""

WRONG = [
    # measured by the reviewer: both accepted before the ghost holder and the forced schedule
    Wrong(
        "inner-join-misses-holders-without-heartbeat",
        rescue(changes=[("LEFT JOIN process_heartbeats", "JOIN process_heartbeats")]),
        says="which has no heartbeat row at all, is still leased to it",
    ),
    Wrong(
        "second-statement-trusts-the-first",
        rescue(recheck=TRUSTS_THE_FIRST),
        says="your first statement's snapshot is older than what they did",
    ),
    Wrong(
        "trusts-the-first-with-current-timestamp",
        rescue(lost=CURRENT, recheck=TRUSTS_THE_FIRST),
        says="your first statement's snapshot is older than what they did",
    ),
    Wrong(
        "one-statement-locks-and-rescues",
        rescue(first="", recheck=ONE_STATEMENT),
        says="your first statement's snapshot is older than what they did",
    ),
    Wrong(
        "waits-for-a-finishing-row",
        rescue(changes=[("FOR UPDATE OF j SKIP LOCKED", "FOR UPDATE OF j")]),
        # not the seconds it waited: a loaded machine lets it give up at 2.1 s
        says="and gave up (lock_timeout 2 s): FOR UPDATE SKIP LOCKED passes over a row",
    ),
    Wrong(
        "nowait-fails-on-a-finishing-row",
        rescue(changes=[("FOR UPDATE OF j SKIP LOCKED", "FOR UPDATE OF j NOWAIT")]),
        says="NOWAIT raises an error on a row its worker is finishing",
    ),
    Wrong(
        "no-row-lock",
        rescue(changes=[("\n           FOR UPDATE OF j SKIP LOCKED) c;", ") c;")]),
        says="for the lock on job",
    ),
    # written blind: the first statement reads without a lock, the second locks as it frees; its
    # snapshot is older than a lease made meanwhile, so the re-check frees a live worker's job
    Wrong(
        "lock-only-in-the-statement-that-frees",
        rescue(
            changes=[("\n           FOR UPDATE OF j SKIP LOCKED) c;", ") c;")],
            recheck=ONE_STATEMENT.replace(
                "         WHERE j.job_assigned_process_uuid",
                "         WHERE j.job_id = ANY (candidates)\n           AND j.job_assigned_process_uuid",
            ),
        ),
        says="it locked the job only in the statement that frees it",
    ),
    # written blind: the second statement reads lost jobs afresh, not only the candidates the first
    # locked: it meets the row of a job whose worker is finishing it late, and waits for it
    Wrong(
        "second-statement-not-kept-to-the-candidates",
        rescue(recheck=variant(RECHECK, "WHERE j.job_id = ANY (candidates)\n           AND ", "WHERE ")),
        says="the second statement keeps to the candidates the first locked",
    ),
    # written blind: a rescued attempt ended at the time it began
    Wrong(
        "attempt-ended-when-it-began",
        rescue(changes=[("SET attempt_ended = clock_timestamp()", "SET attempt_ended = a.attempt_started")]),
        says="ended 'rescued' at a time before the rescue ran",
    ),
    # written blind: a session-level try-lock, never let go: every other connection's rescue returns 0
    Wrong(
        "session-level-try-lock-kept",
        rescue(
            changes=[
                (
                    "BEGIN\n",
                    "BEGIN\n    IF NOT pg_try_advisory_lock(4242) THEN\n        RETURN 0;\n    END IF;\n",
                )
            ]
        ),
        says="taken at session level are still held by sessions that called rescue_jobs before",
    ),
    # written blind: a session-level lock, never unlocked: a rescue on another connection waits for good
    Wrong(
        "session-level-lock-kept",
        rescue(changes=[("BEGIN\n", "BEGIN\n    PERFORM pg_advisory_lock(4242);\n")]),
        says="taken at session level by earlier calls are still held by their sessions",
    ),
    Wrong(
        "rescues-live-workers",
        rescue(lost="           AND (h.process_uuid IS NULL OR true)\n"),
        says="a live worker keeps its jobs",
        also=("whose last heartbeat was",),
    ),
    Wrong(
        "threshold-the-wrong-way",
        rescue(lost=variant(LOST, BEAT, variant(BEAT, "<", ">"))),
        says="is still leased to it: a worker whose last heartbeat is older than rescue_after",
    ),
    Wrong(
        "threshold-hard-coded-10-seconds",
        rescue(lost=variant(LOST, "s.rescue_after", "interval '10 seconds'")),
        says="a live worker keeps its jobs",
    ),
    Wrong(
        "threshold-hard-coded-1-minute",
        rescue(lost=variant(LOST, "s.rescue_after", "interval '1 minute'")),
        says="older than rescue_after",
    ),
    Wrong(
        "forgets-stopped-workers",
        rescue(lost=variant(LOST, "\n                OR h.process_stopped_timestamp IS NOT NULL)", ")")),
        says="which said it stopped though its heartbeat is fresh",
    ),
    Wrong(
        "attempt-left-open",
        rescue(changes=[(ENDED, "")]),
        says="attempt at it is still open: end it (attempt_ended) with outcome 'rescued'",
    ),
    Wrong(
        "attempt-ended-failed",
        rescue(changes=[("outcome = 'rescued'", "outcome = 'failed'")]),
        says="an attempt taken from a silent worker ends 'rescued'",
        also=("attempt at it ended 'failed'",),
    ),
    Wrong(
        "never-dead-letters",
        rescue(changes=[("j.job_attempts >= s.max_attempts", "j.job_attempts > s.max_attempts")]),
        says="a job out of attempts is dead-lettered",
        also=("had used 2 of its 2 attempts (max_attempts) when worker",),
    ),
    Wrong(
        "no-wake-up",
        rescue(
            changes=[
                (WOKEN.split("    )\n")[0], ""),
                (
                    "SELECT (SELECT count(*) FROM back), (SELECT count(*) FROM woken) INTO freed, notified;",
                    "SELECT count(*) INTO freed FROM back;",
                ),
            ]
        ),
        says="idle workers sleep until their next poll",
        also=("nothing was heard on",),
    ),
    # written blind: each was accepted before the judge compared every ended attempt's row, and put
    # a beating worker with its kill switch set in the scene
    Wrong(
        "rewrites-ended-attempts-of-lost-jobs",
        rescue(changes=[(" AND a.attempt_ended IS NULL\n", "\n")]),
        says="which had ended 'failed' before it ran: it changed its attempt_ended, outcome "
        "('failed' became 'rescued')",
    ),
    Wrong(
        "rewrites-every-attempt-of-the-holder",
        rescue(
            changes=[
                (
                    "          FROM lost\n"
                    "         WHERE a.job_id = lost.job_id AND a.attempt_ended IS NULL\n",
                    "          FROM lost JOIN job_queue q ON q.job_id = lost.job_id\n"
                    "         WHERE a.process_uuid = q.job_assigned_process_uuid\n",
                )
            ]
        ),
        says="which had ended 'succeeded' before it ran",
    ),
    Wrong(
        "rescues-workers-whose-kill-switch-is-set",
        rescue(lost=KILLED),
        says="it is alive (beating) and finishing its job; the kill switch only asks it to stop",
        also=("whose kill switch is set but which beat",),
    ),
    Wrong(
        "returns-its-candidates",
        rescue(changes=[("    RETURN freed;\n", "    RETURN cardinality(candidates);\n")]),
        says="where it freed 0",
    ),
]

LOOP = """
CREATE OR REPLACE FUNCTION rescue_jobs() RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    s queue_settings;
    r record;
    freed integer := 0;
BEGIN
    SELECT * INTO s FROM queue_settings;
    -- one candidate at a time, each locked as the loop reaches it; the body re-reads it under the lock
    FOR r IN
        SELECT j.job_id FROM job_queue j
          LEFT JOIN process_heartbeats h ON h.process_uuid = j.job_assigned_process_uuid
         WHERE j.job_assigned_process_uuid IS NOT NULL AND j.job_finished IS NULL
           AND (h.process_uuid IS NULL OR h.process_stopped_timestamp IS NOT NULL
                OR h.last_beat_timestamp < clock_timestamp() - s.rescue_after)
         ORDER BY j.job_id
           FOR UPDATE OF j SKIP LOCKED
    LOOP
        CONTINUE WHEN NOT EXISTS (
            SELECT 1 FROM job_queue j
             WHERE j.job_id = r.job_id AND j.job_assigned_process_uuid IS NOT NULL AND j.job_finished IS NULL
               AND NOT EXISTS (SELECT 1 FROM process_heartbeats h
                                WHERE h.process_uuid = j.job_assigned_process_uuid
                                  AND h.process_stopped_timestamp IS NULL
                                  AND h.last_beat_timestamp >= clock_timestamp() - s.rescue_after));
        UPDATE job_attempts SET attempt_ended = clock_timestamp(), outcome = 'rescued', error = 'silent'
         WHERE job_id = r.job_id AND attempt_ended IS NULL;
        UPDATE job_queue
           SET job_assigned_process_uuid = NULL, job_assign_timestamp = NULL,
               job_dead_timestamp = CASE WHEN job_attempts >= s.max_attempts THEN clock_timestamp() END,
               job_error = CASE WHEN job_attempts >= s.max_attempts THEN 'out of attempts: worker silent' END
         WHERE job_id = r.job_id;
        PERFORM pg_notify(wake_channel(job_process_name, job_process_version), job_id::text)
           FROM job_queue WHERE job_id = r.job_id AND job_dead_timestamp IS NULL;
        freed := freed + 1;
    END LOOP;
    RETURN freed;
END $$;
"""

STATEMENTS = """
CREATE FUNCTION rescue_jobs() RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    s queue_settings;
    candidates integer[];
    lost integer[];
BEGIN
    SELECT * INTO s FROM queue_settings;
    SELECT array_agg(job_id) INTO candidates FROM (
        SELECT j.job_id FROM job_queue j
         WHERE j.job_assigned_process_uuid IS NOT NULL AND j.job_finished IS NULL
           AND NOT EXISTS (SELECT 1 FROM process_heartbeats h
                            WHERE h.process_uuid = j.job_assigned_process_uuid
                              AND h.process_stopped_timestamp IS NULL
                              AND h.last_beat_timestamp >= now() - s.rescue_after)
           FOR UPDATE OF j SKIP LOCKED) c;
    -- a new statement, a new snapshot: which of the locked jobs are still lost
    SELECT array_agg(j.job_id) INTO lost
      FROM job_queue j
     WHERE j.job_id = ANY (candidates)
       AND NOT EXISTS (SELECT 1 FROM process_heartbeats h
                        WHERE h.process_uuid = j.job_assigned_process_uuid
                          AND h.process_stopped_timestamp IS NULL
                          AND h.last_beat_timestamp >= now() - s.rescue_after);
    IF lost IS NULL THEN
        RETURN 0;
    END IF;
    UPDATE job_attempts SET attempt_ended = clock_timestamp(), outcome = 'rescued'
     WHERE job_id = ANY (lost) AND attempt_ended IS NULL;
    UPDATE job_queue
       SET job_assigned_process_uuid = NULL, job_assign_timestamp = NULL,
           job_dead_timestamp = CASE WHEN job_attempts >= s.max_attempts THEN clock_timestamp() END,
           job_error = CASE WHEN job_attempts >= s.max_attempts THEN 'its worker went silent' END
     WHERE job_id = ANY (lost);
    PERFORM pg_notify(wake_channel(job_process_name, job_process_version), max(job_id)::text)
       FROM job_queue WHERE job_id = ANY (lost) AND job_dead_timestamp IS NULL
      GROUP BY job_process_name, job_process_version;
    RETURN cardinality(lost);
END $$;
"""

# the lost job's open attempt found as its latest one, and ended only if it is still open
LATEST = """\
    ), ended AS (
        UPDATE job_attempts a
           SET attempt_ended = clock_timestamp(), outcome = 'rescued', error = 'silent'
          FROM lost
         WHERE a.attempt_id = (SELECT max(attempt_id) FROM job_attempts l WHERE l.job_id = lost.job_id)
           AND a.attempt_ended IS NULL
"""

# written blind: the attempt counted again, which the claim that leased the job counted already
WRONG.append(
    Wrong(
        "counts-the-attempt-again",
        rescue(
            changes=[
                (
                    "SET job_assigned_process_uuid = NULL, job_assign_timestamp = NULL,",
                    "SET job_assigned_process_uuid = NULL, job_assign_timestamp = NULL,\n"
                    "               job_attempts = j.job_attempts + 1,",
                )
            ]
        ),
        "a rescue leaves job_attempts as it is",
    )
)

# written blind: a lock two rescues share, so each waits for the other to change the rows
WRONG.append(
    Wrong(
        "shares-its-lock-with-another-rescue",
        rescue(changes=[("FOR UPDATE OF j SKIP LOCKED", "FOR SHARE OF j SKIP LOCKED")]),
        "both locked the same lost jobs with a lock the other could share too",
    )
)

RIGHT = [
    Right("reference-two-statements-ctes", REFERENCE),
    Right("plpgsql-loop-rechecks-each-row", LOOP),
    Right("not-exists-statements-with-now", STATEMENTS),
    Right("current-timestamp-plus-interval", rescue(lost=CURRENT)),
    # rescue_jobs runs inside find_job, one statement a worker sends on its own (autocommit): now()
    # is that statement's start, a moment before clock_timestamp(), and never later
    Right("now-instead-of-clock-timestamp", rescue(lost=variant(LOST, "clock_timestamp()", "now()"))),
    Right("ends-the-latest-attempt-by-id", rescue(changes=[(ENDED, LATEST)])),
    Right(
        "threshold-read-inline",
        rescue(lost=variant(LOST, "s.rescue_after", "(SELECT rescue_after FROM queue_settings)")),
    ),
]
