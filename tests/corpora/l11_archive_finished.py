"""Lesson 11's archive: the jobs of pipe jobs finished %(seconds)s ago or more, and their attempts, moved."""

from pgqueue import check
from tests.corpora import Right, Wrong, variant

JUDGE = check.archive_finished

OLD_PIPE_JOB = "p.pipe_job_finish_timestamp <= clock_timestamp() - make_interval(secs => %(seconds)s)"
OLD = f"""
WITH old AS (
    SELECT j.job_id FROM job_queue j JOIN pipe_job_queue p USING (pipe_job_id)
     WHERE j.job_finished AND p.pipe_job_finished
       AND {OLD_PIPE_JOB}
)"""
ATTEMPTS = """, attempts AS (
    DELETE FROM job_attempts WHERE job_id IN (SELECT job_id FROM old) RETURNING *
), kept_attempts AS (
    INSERT INTO job_attempt_archive SELECT * FROM attempts
)"""
JOBS = """, jobs AS (
    DELETE FROM job_queue WHERE job_id IN (SELECT job_id FROM old) RETURNING *
)
INSERT INTO job_archive SELECT * FROM jobs
"""
# every column of the hardened job_queue but job_finish_timestamp
COLUMNS = """job_id, pipe_job_id, pipe_id, job_payload, job_priority, job_finished, job_create_timestamp,
    job_assign_timestamp, job_assigned_process_uuid, job_process_name, job_process_version,
    job_process_config, job_creater_process_uuid, job_creater_process_name, job_creater_process_version,
    job_set_elements, job_creater_set_elements, job_parent_set_elements, job_attempts, job_run_after,
    job_dead_timestamp, job_error"""


def archive(old: str = OLD, attempts: str = ATTEMPTS, jobs: str = JOBS) -> str:
    """The reference statement, with one of its parts written otherwise."""
    return old + attempts + jobs


WRONG = [
    Wrong(
        "positional-placeholder",
        archive(old=variant(OLD, "%(seconds)s", "%s")),
        "psycopg could not send your SQL",
    ),
    Wrong(
        "unfilled-skeleton",
        OLD
        + "\n-- TODO: move the attempts of `old`, then the jobs, into job_attempt_archive and job_archive\n"
        "SELECT count(*) FROM old\n",
        says="jobs of pipe jobs finished at least %(seconds)s ago stay behind",
    ),
    Wrong(
        "jobs-without-their-attempts",
        archive(attempts=""),
        says="a job you moved still had attempts there: move every attempt of each job you move",
    ),
    # some attempts of the moved jobs moved, not all: the same refusal, and the same cause
    Wrong(
        "succeeded-attempts-only",
        archive(
            attempts=""", attempts AS (
    DELETE FROM job_attempts a USING old WHERE a.job_id = old.job_id AND a.outcome = 'succeeded'
    RETURNING a.*
), kept_attempts AS (
    INSERT INTO job_attempt_archive SELECT * FROM attempts
)"""
        ),
        says="a job you moved still had attempts there",
    ),
    Wrong(
        "attempts-deleted-not-archived",
        archive(
            attempts=""", attempts AS (
    DELETE FROM job_attempts WHERE job_id IN (SELECT job_id FROM old)
)"""
        ),
        says="attempts of the moved jobs vanished, deleted but never inserted into job_attempt_archive",
    ),
    # the same, joined by USING: its ✓ for the attempts of the moved jobs was printed beside the ✗
    Wrong(
        "attempts-deleted-using-old-not-archived",
        archive(
            attempts=""", gone_attempts AS (
    DELETE FROM job_attempts a USING old WHERE a.job_id = old.job_id
)"""
        ),
        says="attempts of the moved jobs vanished",
    ),
    Wrong(
        "jobs-deleted-not-archived",
        archive(
            jobs=""", jobs AS (
    DELETE FROM job_queue WHERE job_id IN (SELECT job_id FROM old)
)
SELECT 1
"""
        ),
        says="jobs vanished",
    ),
    Wrong(
        "copied-never-deleted",
        OLD
        + """, kept_attempts AS (
    INSERT INTO job_attempt_archive SELECT * FROM job_attempts WHERE job_id IN (SELECT job_id FROM old)
)
INSERT INTO job_archive SELECT * FROM job_queue WHERE job_id IN (SELECT job_id FROM old)
""",
        says="jobs of pipe jobs finished at least %(seconds)s ago stay behind",
    ),
    Wrong(
        "every-finished-pipe-job",
        archive(variant(OLD, OLD_PIPE_JOB, "%(seconds)s::int IS NOT NULL")),
        says="it moved jobs that had to stay",
    ),
    Wrong(
        "hard-coded-one-minute",
        archive(variant(OLD, "make_interval(secs => %(seconds)s)", "interval '1 minute'")),
        says="what it moves does not follow %(seconds)s",
    ),
    # at the low threshold only the oldest jobs go, at the high one none: their attempts go with them
    Wrong(
        "threshold-read-as-minutes",
        archive(variant(OLD, "make_interval(secs => %(seconds)s)", "%(seconds)s * interval '1 minute'")),
        says="it reads %(seconds)s as minutes, not seconds",
    ),
    Wrong(
        "threshold-divided-by-sixty",
        archive(
            variant(OLD, "make_interval(secs => %(seconds)s)", "make_interval(secs => %(seconds)s / 60.0)")
        ),
        says="it reads %(seconds)s in a unit smaller than seconds",
    ),
    # a job's own finish, not its pipe job's: a first step that finished long ago goes while its
    # pipe job still runs
    Wrong(
        "job-finish-time-not-the-pipe-job",
        archive(
            """
WITH old AS (
    SELECT job_id FROM job_queue
     WHERE job_finished AND job_finish_timestamp <= clock_timestamp() - make_interval(secs => %(seconds)s)
)"""
        ),
        says="of pipe jobs still running",
    ),
    Wrong(
        "two-statements",
        """
INSERT INTO job_attempt_archive SELECT * FROM job_attempts WHERE job_id IN (SELECT job_id FROM job_archive);
DELETE FROM job_queue
 WHERE job_finished AND job_finish_timestamp <= clock_timestamp() - make_interval(secs => %(seconds)s);
""",
        says="write one statement",
    ),
    Wrong(
        "column-list-forgets-one",
        archive(
            jobs=f""", jobs AS (
    DELETE FROM job_queue WHERE job_id IN (SELECT job_id FROM old) RETURNING *
)
INSERT INTO job_archive ({COLUMNS})
SELECT {COLUMNS} FROM jobs
"""
        ),
        says="differ from the row job_queue held",
    ),
    # some jobs were attempted twice (a rescue, then a success): the join repeats them
    Wrong(
        "joined-to-attempts",
        archive(
            jobs=""", jobs AS (
    DELETE FROM job_queue WHERE job_id IN (SELECT job_id FROM old) RETURNING *
)
INSERT INTO job_archive SELECT j.* FROM jobs j JOIN attempts a USING (job_id)
"""
        ),
        says="job_archive holds jobs twice",
    ),
    Wrong(
        "every-ended-attempt",
        archive(
            attempts=""", attempts AS (
    DELETE FROM job_attempts WHERE attempt_ended IS NOT NULL RETURNING *
), kept_attempts AS (
    INSERT INTO job_attempt_archive SELECT * FROM attempts
)"""
        ),
        says="it moved attempts of jobs that stay",
    ),
]

RIGHT = [
    Right("delete-returning-into-insert", archive()),
    Right(
        "delete-using-then-attempts-by-the-deleted",
        """
WITH jobs AS (
    DELETE FROM job_queue j USING pipe_job_queue p
     WHERE p.pipe_job_id = j.pipe_job_id AND j.job_finished IS TRUE AND p.pipe_job_finished
       AND p.pipe_job_finish_timestamp <= now() - %(seconds)s * interval '1 second'
    RETURNING j.*
), attempts AS (
    DELETE FROM job_attempts a USING jobs WHERE a.job_id = jobs.job_id RETURNING a.*
), kept AS (
    INSERT INTO job_attempt_archive SELECT * FROM attempts
)
INSERT INTO job_archive SELECT * FROM jobs
""",
    ),
    # %(seconds)s in hours, and the transaction's start for now: the unit is right, only written otherwise
    Right(
        "threshold-as-a-fraction-of-an-hour",
        archive(
            variant(
                OLD,
                OLD_PIPE_JOB,
                "p.pipe_job_finish_timestamp <= now() - %(seconds)s / 3600.0 * interval '1 hour'",
            )
        ),
    ),
    Right(
        "in-subquery-counts-returned",
        OLD
        + """,
da AS (DELETE FROM job_attempts WHERE job_id IN (SELECT job_id FROM old) RETURNING *),
ia AS (INSERT INTO job_attempt_archive SELECT * FROM da RETURNING 1),
dj AS (DELETE FROM job_queue WHERE job_id IN (SELECT job_id FROM old) RETURNING *),
ij AS (INSERT INTO job_archive SELECT * FROM dj RETURNING 1)
SELECT (SELECT count(*) FROM ij) AS jobs, (SELECT count(*) FROM ia) AS attempts
""",
    ),
    # every sub-statement sees the same snapshot: what it copies is what was there, then it deletes
    Right(
        "copy-first-then-delete-what-was-copied",
        """
WITH moved AS (
    INSERT INTO job_archive
    SELECT j.* FROM job_queue j
     WHERE j.job_finished
       AND EXISTS (SELECT 1 FROM pipe_job_queue p
                    WHERE p.pipe_job_id = j.pipe_job_id AND p.pipe_job_finished
                      AND extract(epoch FROM clock_timestamp() - p.pipe_job_finish_timestamp) >= %(seconds)s)
    RETURNING job_id
), moved_attempts AS (
    INSERT INTO job_attempt_archive SELECT a.* FROM job_attempts a JOIN moved USING (job_id)
    RETURNING attempt_id
), gone_attempts AS (
    DELETE FROM job_attempts WHERE attempt_id IN (SELECT attempt_id FROM moved_attempts)
)
DELETE FROM job_queue WHERE job_id IN (SELECT job_id FROM moved)
""",
    ),
]
