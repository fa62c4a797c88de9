-- Lesson 12's checker (pgqueue/check/claim.py): jobs placed by hand around a learner's claim_jobs,
-- on a scratch copy of the hardened lab. Every call goes through the real find_job, as a worker's.

-- name: settings
-- A lease outlives the checker: no job placed as leased is rescued while it runs. A failed job
-- is due again at once (no backoff).
UPDATE queue_settings SET rescue_after = interval '1 hour', backoff_base = interval '0';

-- name: pipe_job
-- A request for pipeline 2 (its own entry job is first_process's, which no check asks for): the
-- pipe job the placed jobs belong to.
INSERT INTO pipe_job_queue (request_id, pipe_id)
VALUES ((SELECT coalesce(max(request_id), 0) + 1 FROM pipe_job_queue), 2)
RETURNING pipe_job_id;

-- name: place
-- One job, `age` seconds old, as the queue leaves it: waiting; leased to `taken_by`; finished;
-- dead-lettered after its attempts; or failed once and backing off until `due_in` seconds from now.
INSERT INTO job_queue (pipe_job_id, pipe_id, job_process_name, job_process_version, job_priority,
                       job_create_timestamp, job_assigned_process_uuid, job_assign_timestamp,
                       job_finished, job_finish_timestamp, job_attempts, job_run_after,
                       job_dead_timestamp, job_error)
VALUES (%(pipe_job_id)s, 2, %(name)s, %(version)s, %(priority)s,
        clock_timestamp() - make_interval(secs => %(age)s),
        %(taken_by)s, CASE WHEN %(taken_by)s::varchar IS NOT NULL THEN clock_timestamp() END,
        CASE WHEN %(finished)s THEN true END, CASE WHEN %(finished)s THEN clock_timestamp() END,
        %(attempts)s, clock_timestamp() + make_interval(secs => %(due_in)s),
        CASE WHEN %(dead)s THEN clock_timestamp() END, %(error)s)
RETURNING job_id;

-- name: index_scans_off
-- For one session: every read of job_queue is a scan in the table's physical order, so the order
-- of the jobs handed out can only come from an ORDER BY, not from the index a plan happened to use.
SELECT set_config('enable_indexscan', 'off', false), set_config('enable_indexonlyscan', 'off', false),
       set_config('enable_bitmapscan', 'off', false);

-- name: lock_timeout
-- A caller that has to wait for a lock gives up after `ms` (and says so with LockNotAvailable).
SELECT set_config('lock_timeout', %(ms)s, false);

-- name: crowd
-- `jobs` waiting jobs of other processes (twenty of them), in one statement: a long queue the
-- checked process has nothing to do with. Priorities and ages vary, as in a real queue.
INSERT INTO job_queue (pipe_job_id, pipe_id, job_process_name, job_process_version, job_priority,
                       job_create_timestamp)
SELECT %(pipe_job_id)s, 2, 'crowd_process_' || n %% 20, '1.0.0', 1 + n %% 200,
       clock_timestamp() - make_interval(secs => n %% 3600)
  FROM generate_series(1, %(jobs)s) AS n;

-- name: analyze
ANALYZE job_queue;

-- name: reads
-- What this transaction has read of job_queue so far: whole-table scans, and rows fetched from the
-- table by a scan or through an index.
SELECT coalesce(seq_scan, 0), coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0)
  FROM pg_stat_xact_user_tables
 WHERE relid = 'job_queue'::regclass;

-- name: backing_off
-- `jobs` jobs of one process that failed once and wait out an hour's backoff, in one statement.
-- They are in the partial index of waiting jobs (it does not know job_run_after), ahead of the
-- rest: a claim walks past them, after its snapshot, before it reaches a job it may take.
INSERT INTO job_queue (pipe_job_id, pipe_id, job_process_name, job_process_version, job_priority,
                       job_attempts, job_run_after, job_error)
SELECT %(pipe_job_id)s, 2, %(name)s, %(version)s, 1, 1, clock_timestamp() + interval '1 hour', 'failed once'
  FROM generate_series(1, %(jobs)s);

-- name: attempts_of
-- How many times each of jobs `ids` was leased: its attempts.
SELECT j.job_id, count(a.attempt_id)
  FROM job_queue j LEFT JOIN job_attempts a ON a.job_id = j.job_id
 WHERE j.job_id = ANY (%(ids)s)
 GROUP BY j.job_id ORDER BY j.job_id;

-- name: lease
-- Jobs `ids` as a claim by `uuid` left them: holder, since when, attempts counted, and that
-- caller's attempts still running.
SELECT j.job_id, j.job_assigned_process_uuid, j.job_assign_timestamp IS NOT NULL, j.job_attempts,
       (SELECT count(*) FROM job_attempts a
         WHERE a.job_id = j.job_id AND a.process_uuid = %(uuid)s AND a.attempt_ended IS NULL)
  FROM job_queue j
 WHERE j.job_id = ANY (%(ids)s)
 ORDER BY j.job_id;

-- name: locked_waiting
-- How many waiting jobs of version `version` some open transaction holds a row lock on: the rows a
-- SKIP LOCKED probe passes over (its own locks end with this statement).
SELECT count(*) - (SELECT count(*) FROM (
           SELECT 1 FROM job_queue
            WHERE job_process_version = %(version)s AND job_assigned_process_uuid IS NULL
              AND job_finished IS NULL
              FOR UPDATE SKIP LOCKED) AS free)
  FROM job_queue
 WHERE job_process_version = %(version)s AND job_assigned_process_uuid IS NULL AND job_finished IS NULL;
