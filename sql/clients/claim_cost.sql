-- What lesson 12 measures of one hardened claim beside jobs in other states (pgqueue/lab/claim_cost.py).

-- name: pipe_job
-- A request for pipeline 2 (its entry job waits for first_process 1.9.2).
INSERT INTO pipe_job_queue (request_id, pipe_id) VALUES (%(request_id)s, 2) RETURNING pipe_job_id;

-- name: add_waiting
-- `n` due jobs of first_process 1.9.2, after every job already there in serving order.
INSERT INTO job_queue (pipe_job_id, pipe_id, job_process_name, job_process_version, job_create_timestamp)
SELECT %(pipe_job_id)s, 2, 'first_process', '1.9.2', clock_timestamp() + make_interval(secs => i)
  FROM generate_series(1, %(n)s) AS i;

-- name: add_backing_off
-- `n` jobs of the same process that failed once and wait their backoff out for an hour: made
-- earlier, so in serving order they come before every due job.
INSERT INTO job_queue (pipe_job_id, pipe_id, job_process_name, job_process_version, job_create_timestamp,
                       job_attempts, job_run_after)
SELECT %(pipe_job_id)s, 2, 'first_process', '1.9.2', clock_timestamp() - interval '1 day' + make_interval(secs => i),
       1, clock_timestamp() + interval '1 hour'
  FROM generate_series(1, %(n)s) AS i;

-- name: add_running
-- `n` jobs of the same process leased by one live worker (it beat just now).
WITH worker AS (
    INSERT INTO process_heartbeats (process_uuid, server_name, process_name, process_version)
    VALUES (%(holder)s, 'claim-cost', 'first_process', '1.9.2') RETURNING process_uuid
)
INSERT INTO job_queue (pipe_job_id, pipe_id, job_process_name, job_process_version,
                       job_assigned_process_uuid, job_assign_timestamp, job_attempts)
SELECT %(pipe_job_id)s, 2, 'first_process', '1.9.2', worker.process_uuid, clock_timestamp(), 1
  FROM worker, generate_series(1, %(n)s);

-- name: analyze
ANALYZE job_queue;

-- name: explain_rescue_scan
-- The rescue's first look at every lease (rescue_jobs, without its lock), which each find_job makes.
EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)
SELECT j.job_id FROM job_queue j
  LEFT JOIN process_heartbeats h ON h.process_uuid = j.job_assigned_process_uuid
 WHERE j.job_assigned_process_uuid IS NOT NULL AND j.job_finished IS NULL
   AND (h.process_uuid IS NULL
        OR h.last_beat_timestamp < clock_timestamp() - (SELECT rescue_after FROM queue_settings)
        OR h.process_stopped_timestamp IS NOT NULL);
