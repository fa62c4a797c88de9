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

-- name: gate_trial
-- A fresh request for the order-gate trials: the next-order pipe job first (so it is there
-- when the gate opens), then two pipe jobs of the order before. Returns them in that order.
WITH request AS (SELECT coalesce(max(request_id), 0) + 1 AS id FROM pipe_job_queue)
INSERT INTO pipe_job_queue (request_id, pipe_id)
SELECT request.id, pipe.id FROM request, unnest(ARRAY[%(next_pipe)s, %(pipe)s, %(pipe)s]::integer[])
       WITH ORDINALITY AS pipe (id, n)
 ORDER BY pipe.n
RETURNING pipe_job_id;
