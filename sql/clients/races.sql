-- What the race experiments read to know where each worker is.

-- name: wait_event
-- 'Lock' while that backend waits for a row lock another transaction holds.
SELECT wait_event_type FROM pg_stat_activity WHERE pid = %(pid)s;

-- name: owner
SELECT job_assigned_process_uuid FROM job_queue
 WHERE job_process_name = %(name)s AND job_process_version = %(version)s
 ORDER BY job_id LIMIT 1;

-- name: finish_pipe_job
-- Finish a pipe job the way finish_pipe does for its last job (the trigger runs on this update).
UPDATE pipe_job_queue SET pipe_job_finished = true, pipe_job_finish_timestamp = clock_timestamp()
 WHERE pipe_job_id = %(pipe_job_id)s;

-- name: entry_job_of
SELECT count(*) FROM job_queue WHERE pipe_job_id = %(pipe_job_id)s;
