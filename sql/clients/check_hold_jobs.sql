-- Lesson 12's checker (pgqueue/check/hold_jobs.py): what it reads and sets around a learner's
-- hold_jobs. The calls themselves are the workers' own (sql/clients/hardened.sql).

-- name: job
SELECT pipe_job_id, job_process_name, job_finished IS TRUE AS finished,
       job_assigned_process_uuid AS holder, job_attempts
  FROM job_queue WHERE job_id = %(job_id)s;

-- name: jobs_of_step
-- The jobs of one step of a pipe job: what hand-overs made, each hand-over once.
SELECT coalesce(array_agg(job_id ORDER BY job_id), '{}') FROM job_queue
 WHERE pipe_job_id = %(pipe_job_id)s AND job_process_name = %(name)s;

-- name: pipe_job_finished
SELECT pipe_job_finished FROM pipe_job_queue WHERE pipe_job_id = %(pipe_job_id)s;

-- name: no_such_job
-- A job id nobody made.
SELECT coalesce(max(job_id), 0) + 1000 FROM job_queue;

-- name: lock_job
-- The checker holds a job's row, as a finisher would, to stop another finisher at it.
SELECT job_id FROM job_queue WHERE job_id = %(job_id)s FOR UPDATE;

-- name: blocked_by
-- The sessions that backend `pid` waits for (empty when it waits for none).
SELECT pg_blocking_pids(%(pid)s);

-- name: lock_timeout
-- A finisher that waits for a lock longer than this fails, instead of hanging the checker.
SELECT set_config('lock_timeout', %(ms)s, false);

-- name: rescue
-- The kit's rescue, as every find_job runs it: silent workers' jobs go back to the queue.
SELECT rescue_jobs();
