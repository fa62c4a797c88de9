-- Lesson 12's rescue checker (pgqueue/check/rescue.py): leases made through the real find_job
-- of a scratch hardened lab, then the learner's rescue_jobs called as every find_job calls it.

-- name: requests
-- New requests of pipeline 2 (a plain chain), each starting one first_process job, until
-- `count` such jobs wait (the examples' request 50 has one already).
INSERT INTO pipe_job_queue (request_id, pipe_id)
SELECT (SELECT coalesce(max(request_id), 0) FROM pipe_job_queue) + n, 2
  FROM generate_series(1, %(count)s - (SELECT count(*) FROM job_queue
                                        WHERE job_process_name = 'first_process'
                                          AND job_process_version = '1.9.2'
                                          AND job_assigned_process_uuid IS NULL
                                          AND job_finished IS NULL)) AS n
RETURNING pipe_job_id;

-- name: rescue
SELECT rescue_jobs();

-- name: job
-- One job as the checker judges it, and its latest attempt.
SELECT j.job_id, j.job_assigned_process_uuid AS holder, j.job_finished IS TRUE AS finished,
       j.job_dead_timestamp IS NOT NULL AS dead, j.job_error AS error, j.job_attempts AS attempts,
       a.process_uuid AS tried_by, a.attempt_ended IS NULL AS running, a.outcome
  FROM job_queue j
  LEFT JOIN LATERAL (SELECT * FROM job_attempts a WHERE a.job_id = j.job_id
                      ORDER BY a.attempt_id DESC LIMIT 1) a ON true
 WHERE j.job_id = %(job_id)s;

-- name: open_attempts
-- Attempts of a job still running: one at most, and none once it was given back.
SELECT count(*) FROM job_attempts WHERE job_id = %(job_id)s AND attempt_ended IS NULL;

-- name: wake_channel
SELECT wake_channel(%(name)s, %(version)s);

-- name: settings
SELECT extract(epoch FROM rescue_after)::float8 AS rescue_after_s, max_attempts FROM queue_settings;

-- name: beat_age
-- How long ago a worker last beat, in seconds.
SELECT round(extract(epoch FROM clock_timestamp() - last_beat_timestamp)::numeric, 1)::float8
  FROM process_heartbeats WHERE process_uuid = %(uuid)s;
