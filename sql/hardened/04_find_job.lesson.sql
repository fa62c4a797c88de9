-- Queries the hardened lessons (and their tests) show and run.

-- name: rescue_after
-- Turn the rescue threshold (a lesson shortens it, so a rescue is seen in seconds).
UPDATE queue_settings SET rescue_after = make_interval(secs => %(seconds)s);

-- name: retries
-- Turn the retry knobs: how many attempts, and the first backoff (seconds).
UPDATE queue_settings SET max_attempts = %(max_attempts)s, backoff_base = make_interval(secs => %(base)s),
                          backoff_cap = greatest(backoff_cap, make_interval(secs => %(base)s));

-- name: age_heartbeat
-- As if the worker had gone silent `seconds` ago (a SIGKILLed worker simply stops beating).
UPDATE process_heartbeats SET last_beat_timestamp = clock_timestamp() - make_interval(secs => %(seconds)s)
 WHERE process_uuid = %(uuid)s;

-- name: outcomes
-- The attempts at one job, in order: 'succeeded', 'failed', 'rescued', or NULL while it runs.
SELECT outcome FROM job_attempts WHERE job_id = %(job_id)s ORDER BY attempt_id;

-- name: job
SELECT job_id, job_attempts, job_assigned_process_uuid, job_finished, job_dead_timestamp, job_error,
       extract(epoch FROM job_run_after - clock_timestamp())::float8 AS wait_s
  FROM job_queue WHERE job_id = %(job_id)s;

-- name: run_now
-- Skip the rest of a job's backoff.
UPDATE job_queue SET job_run_after = clock_timestamp() WHERE job_id = %(job_id)s;

-- name: table_sizes
-- Rows per table, and a checksum of every row: a call refused, or repeated, changes nothing.
SELECT (SELECT count(*) FROM pipe_job_queue) AS pipe_jobs,
       (SELECT count(*) FROM job_queue)      AS jobs,
       (SELECT count(*) FROM job_attempts)   AS attempts,
       (SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) FROM pipe_job_queue t) AS pipe_jobs_sum,
       (SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) FROM job_queue t)      AS jobs_sum,
       (SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) FROM job_attempts t)   AS attempts_sum,
       (SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) FROM process_heartbeats t) AS beats_sum;

-- name: pipe_jobs_of
SELECT count(*) FROM pipe_job_queue WHERE request_id = %(request_id)s;

-- name: jobs_of
SELECT count(*) FROM job_queue WHERE pipe_job_id = %(pipe_job_id)s;

-- name: finish_pipe_job
-- What finish_pipe does last, by hand.
UPDATE pipe_job_queue SET pipe_job_finished = true, pipe_job_finish_timestamp = clock_timestamp()
 WHERE pipe_job_id = %(pipe_job_id)s;
