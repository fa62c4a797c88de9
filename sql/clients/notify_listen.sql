-- What the notify/listen worker sends.

-- name: listen
-- The channel is a quoted identifier, filled in with psycopg.sql.Identifier.
LISTEN {channel};

-- name: create_job
-- A procedure, as in the original; its result row holds the new job's id (NULL after the last step).
CALL create_job(%(job_id)s, %(payload)s);

-- name: record_job_failure
SELECT record_job_failure(%(job_id)s, %(message)s);

-- name: create_first_job
SELECT create_first_job(%(request_id)s, %(pipe_id)s, %(payload)s, %(creator)s);

-- name: job_counts
SELECT count(*) FILTER (WHERE job_assigned_process_uuid IS NULL)                    AS waiting,
       count(*) FILTER (WHERE job_assigned_process_uuid IS NOT NULL AND NOT job_finished) AS running,
       count(*) FILTER (WHERE job_finished)                                         AS finished,
       (SELECT count(*) FROM jobs_failed)                                            AS failed
  FROM job_queue;

-- name: jobs
SELECT job_id, request_id, pipe_id, job_process_name, job_process_version,
       job_assigned_process_uuid, job_finished, job_create_timestamp, job_assign_timestamp,
       job_finished_timestamp, job_process_config, job_payload
  FROM job_queue ORDER BY job_id;

-- name: next_request_id
SELECT coalesce(max(request_id), 0) + 1 FROM job_queue;
