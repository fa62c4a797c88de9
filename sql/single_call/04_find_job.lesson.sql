-- Queries lesson 04 shows and runs.

-- name: pipe_jobs
SELECT pipe_job_id, request_id, pipe_id, pipe_job_priority, pipe_job_finished
  FROM pipe_job_queue ORDER BY pipe_job_id;

-- name: claims
SELECT claimed_job_ids, claimer_uuid, claim_timestamp FROM job_queue_claim ORDER BY claim_timestamp;

-- name: plan_of_the_pick
-- How PostgreSQL runs find_job's pick: LockRows sits between Limit and Sort, so every call
-- sorts every waiting row of that process before it can lock the first one.
EXPLAIN (COSTS OFF)
SELECT * FROM job_queue
 WHERE coalesce(job_assigned_process_uuid, '') = '' AND job_finished IS NULL
   AND job_process_name = %(name)s AND job_process_version = %(version)s
 ORDER BY job_priority, job_create_timestamp
 LIMIT 1
   FOR UPDATE;
