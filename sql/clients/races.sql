-- What the race experiments read to know where each worker is.

-- name: wait_event
-- 'Lock' while that backend waits for a row lock another transaction holds.
SELECT wait_event_type FROM pg_stat_activity WHERE pid = %(pid)s;

-- name: owner
SELECT job_assigned_process_uuid FROM job_queue
 WHERE job_process_name = %(name)s AND job_process_version = %(version)s
 ORDER BY job_id LIMIT 1;
