-- What lesson 03 runs to show NOTIFY's limits (never applied as a whole).

-- name: notify
-- pg_notify is NOTIFY with the channel and the payload as values, so they can be parameters.
SELECT pg_notify(%(channel)s, %(payload)s);

-- name: gap_pipeline
-- A pipeline with a hole: step 1, then step 3. Its first job runs, and then create_job cannot
-- hand over (there is no step 2): the worker records the failure in jobs_failed.
WITH pipe AS (
    INSERT INTO pipelines (pipe_name, pipe_version, pipe_type) VALUES ('gap_pipe', '1.0.0', 'example')
    RETURNING pipe_id
)
INSERT INTO pipeline_processes (pipe_id, process_name, process_version, process_order)
SELECT pipe_id, step.name, '1.0.0', step.process_order
  FROM pipe, (VALUES ('first_process', 1), ('third_process', 3)) AS step (name, process_order)
RETURNING pipe_id;

-- name: jobs_failed
SELECT failure_id, job_id, request_id, error_message FROM jobs_failed ORDER BY failure_id;

-- name: drop_answer
-- Refused while the trigger heartbeat_finds_job uses the function: replace it instead.
DROP FUNCTION answer_heartbeat();

-- name: count_jobs
-- Any statement will do to open a transaction on a connection that does not autocommit.
SELECT count(*) FROM job_queue;
