-- Queries lesson 04 shows and runs.

-- name: pipe_jobs
SELECT pipe_job_id, request_id, pipe_id, pipe_job_priority, pipe_job_finished
  FROM pipe_job_queue ORDER BY pipe_job_id;

-- name: claims
SELECT claimed_job_ids, claimer_uuid, claim_timestamp FROM job_queue_claim ORDER BY claim_timestamp;

-- name: plan_of_the_pick
-- How PostgreSQL runs find_job's pick. job_queue has no index that answers it, so the plan reads
-- the whole table (Seq Scan), keeps the rows of this process that wait, sorts them, and only
-- then locks the first (LockRows) and stops (Limit).
EXPLAIN (COSTS OFF)
SELECT * FROM job_queue
 WHERE coalesce(job_assigned_process_uuid, '') = '' AND job_finished IS NULL
   AND job_process_name = %(name)s AND job_process_version = %(version)s
 ORDER BY job_priority, job_create_timestamp
 LIMIT 1
   FOR UPDATE;

-- name: add_probe_jobs
-- Jobs for a process no worker runs ('cost_probe'), on the first pipe job: `waiting` waiting
-- ones and `finished` finished ones, to see what the pick's cost depends on.
INSERT INTO job_queue (pipe_job_id, pipe_id, job_process_name, job_process_version, job_finished)
SELECT first.pipe_job_id, first.pipe_id, 'cost_probe', '1.0.0',
       CASE WHEN n <= %(finished)s THEN true END
  FROM (SELECT pipe_job_id, pipe_id FROM pipe_job_queue ORDER BY pipe_job_id LIMIT 1) AS first,
       generate_series(1, %(finished)s + %(waiting)s) AS n;

-- name: remove_probe_jobs
DELETE FROM job_queue WHERE job_process_name = 'cost_probe';

-- name: measure_the_pick
-- The pick for 'cost_probe', run for real: its time and the table pages it touched.
EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)
SELECT * FROM job_queue
 WHERE coalesce(job_assigned_process_uuid, '') = '' AND job_finished IS NULL
   AND job_process_name = 'cost_probe' AND job_process_version = '1.0.0'
 ORDER BY job_priority, job_create_timestamp
 LIMIT 1
   FOR UPDATE;

-- name: measure_the_pick_unlocked
-- The same pick without FOR UPDATE: Limit sits right on Sort, which may then keep only the best
-- row while it reads (a top-N heapsort). With FOR UPDATE, LockRows sits between them, so the
-- sort cannot know that one row is enough and sorts them all.
EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)
SELECT * FROM job_queue
 WHERE coalesce(job_assigned_process_uuid, '') = '' AND job_finished IS NULL
   AND job_process_name = 'cost_probe' AND job_process_version = '1.0.0'
 ORDER BY job_priority, job_create_timestamp
 LIMIT 1;

-- name: work_mem
-- The memory a sort may use before it spills to disk.
SELECT current_setting('work_mem');

-- name: vacuum_job_queue
-- Removes the dead rows the probe left, so the next measurement reads only live pages.
VACUUM job_queue;

-- name: skip_locked_pick
-- What production queues pick with instead (never the originals): rows another transaction has
-- locked are skipped, not waited for.
SELECT job_id FROM job_queue
 WHERE coalesce(job_assigned_process_uuid, '') = '' AND job_finished IS NULL
   AND job_process_name = %(name)s AND job_process_version = %(version)s
 ORDER BY job_priority, job_create_timestamp
 LIMIT 1
   FOR UPDATE SKIP LOCKED;
