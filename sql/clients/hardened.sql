-- What the hardened worker and the command line send (the calls of sql/hardened/).

-- name: find_job
SELECT find_job(%(uuid)s, %(server)s, %(name)s, %(version)s, %(multi)s, %(batch)s);

-- name: create_jobs
-- The caller names itself: only the worker that holds the jobs may finish them.
CALL create_jobs(%(uuid)s, %(job_ids)s, %(payloads)s);

-- name: finish_pipe
CALL finish_pipe(%(uuid)s, %(job_ids)s, %(pipe_job_id)s);

-- name: finish_pipes
-- A batch's last-step jobs, of any pipe jobs, in one call.
CALL finish_pipes(%(uuid)s, %(job_ids)s);

-- name: fail_jobs
CALL fail_jobs(%(uuid)s, %(job_ids)s, %(error)s);

-- name: pulse
CALL pulse(%(uuid)s);

-- name: job_counts
SELECT count(*) FILTER (WHERE job_assigned_process_uuid IS NULL AND job_finished IS NULL
                          AND job_dead_timestamp IS NULL)                            AS waiting,
       count(*) FILTER (WHERE job_assigned_process_uuid IS NOT NULL AND job_finished IS NULL) AS running,
       count(*) FILTER (WHERE job_finished)                                          AS finished,
       count(*) FILTER (WHERE job_dead_timestamp IS NOT NULL)                        AS dead,
       (SELECT count(*) FROM pipe_job_queue WHERE pipe_job_finished)                 AS pipe_jobs_finished,
       (SELECT count(*) FROM pipe_job_queue)                                         AS pipe_jobs
  FROM job_queue;

-- name: attempts
-- Every attempt at a job: who, when, how it ended.
SELECT a.attempt_id, a.job_id, j.job_process_name, a.process_uuid, a.attempt_started,
       a.attempt_ended, a.outcome, a.error
  FROM job_attempts a JOIN job_queue j USING (job_id)
 ORDER BY a.attempt_id;

-- name: worker_role
-- The role the lab's workers connect as, if the lab could make it (step 08).
SELECT rolname FROM pg_roles WHERE rolname = current_database() || '_worker';

-- name: worker_setup
SELECT gathers, rescue_after_s, channel, serves FROM worker_setup(%(name)s, %(version)s);

-- name: is_last_step
SELECT is_last_step(%(pipe_id)s, %(name)s);

-- name: mark_stopped
CALL mark_stopped(%(uuid)s);
