-- What `python -m pgqueue bench` sends: a one-step pipeline of no-op jobs in each design's lab,
-- its queue filled to a depth in one statement, and the floor: a bare SKIP LOCKED queue.

-- name: bench_pipeline
-- A pipeline of one step, `bench_noop 1.0.0`, beside the examples (the same in every design).
INSERT INTO pipelines (pipe_name, pipe_version, pipe_order) VALUES ('bench', '1.0.0', 1)
RETURNING pipe_id;

-- name: bench_step
INSERT INTO pipeline_processes (pipe_id, process_name, process_version, process_order)
VALUES (%(pipe_id)s, 'bench_noop', '1.0.0', 1);

-- name: bench_pipe_job
-- single-call and hardened: one pipe job holds the bench's jobs (its trigger adds one more job).
INSERT INTO pipe_job_queue (request_id, pipe_id) VALUES (1, %(pipe_id)s)
RETURNING pipe_job_id;

-- name: fill_notify_listen
-- `jobs` more waiting jobs, in one statement; each a request of its own, as a submit makes it.
INSERT INTO job_queue (request_id, pipe_id, job_creater_process_name, job_process_name, job_process_version)
SELECT n, %(pipe_id)s, 'bench', 'bench_noop', '1.0.0' FROM generate_series(1, %(jobs)s) AS n;

-- name: fill_requests
-- single-call and hardened: `jobs` more waiting jobs, each a request of its own, as a submit
-- makes it (each pipe job's trigger adds its first job).
INSERT INTO pipe_job_queue (request_id, pipe_id)
SELECT base.n + g, %(pipe_id)s
  FROM (SELECT coalesce(max(request_id), 0) AS n FROM pipe_job_queue) AS base,
       generate_series(1, %(jobs)s) AS g;

-- name: fill_pipe_job
-- single-call and hardened: `jobs` more waiting jobs of the bench's pipe job, in one statement.
INSERT INTO job_queue (pipe_job_id, pipe_id, job_process_name, job_process_version)
SELECT %(pipe_job_id)s, %(pipe_id)s, 'bench_noop', '1.0.0' FROM generate_series(1, %(jobs)s);

-- name: waiting
-- The bench's jobs nobody holds (or ever finished). The originals' "available" is NULL or ''.
SELECT count(*) FROM job_queue
 WHERE coalesce(job_assigned_process_uuid, '') = '' AND job_finished IS NOT TRUE
   AND job_process_name = 'bench_noop';

-- name: finished
-- The bench's jobs the design marked finished (the throughput workers' count is checked against it).
SELECT count(*) FROM job_queue WHERE job_finished IS TRUE AND job_process_name = 'bench_noop';

-- name: analyze
ANALYZE job_queue;

-- name: create_floor
-- The floor: the least a queue in PostgreSQL can do per job. One table, one partial index on
-- the waiting rows, nothing else (no heartbeat, no pipeline, no trigger).
CREATE TABLE floor_queue (
    id          bigserial PRIMARY KEY,
    payload     jsonb       NOT NULL DEFAULT '{}',
    claimed_by  varchar(12),
    claimed_at  timestamptz,
    finished_at timestamptz
);
CREATE INDEX floor_queue_waiting ON floor_queue (id) WHERE claimed_by IS NULL;

-- name: fill_floor
INSERT INTO floor_queue (payload) SELECT '{}' FROM generate_series(1, %(jobs)s);

-- name: floor_waiting
SELECT count(*) FROM floor_queue WHERE claimed_by IS NULL;

-- name: floor_finished
SELECT count(*) FROM floor_queue WHERE finished_at IS NOT NULL;

-- name: floor_analyze
ANALYZE floor_queue;

-- name: floor_claim
-- One job, oldest first, skipping rows another worker holds locked.
UPDATE floor_queue SET claimed_by = %(uuid)s, claimed_at = clock_timestamp()
 WHERE id = (SELECT id FROM floor_queue WHERE claimed_by IS NULL ORDER BY id
             LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING id;

-- name: floor_claim_batch
-- Up to `batch` jobs in one statement (the throughput loop; batch 1 is floor_claim).
UPDATE floor_queue SET claimed_by = %(uuid)s, claimed_at = clock_timestamp()
 WHERE id IN (SELECT id FROM floor_queue WHERE claimed_by IS NULL ORDER BY id
              LIMIT %(batch)s FOR UPDATE SKIP LOCKED)
RETURNING id;

-- name: floor_finish
-- The worker is done with its jobs: a second commit, as every queue needs one.
UPDATE floor_queue SET finished_at = clock_timestamp() WHERE id = ANY (%(ids)s);

-- name: create_pgbench_rows
-- pgbench's table: a thousand counters, so that clients seldom wait on one another's row.
CREATE TABLE bench_rows (id integer PRIMARY KEY, n bigint NOT NULL DEFAULT 0);
INSERT INTO bench_rows (id) SELECT generate_series(1, 1000);

-- name: pgbench_script
-- One transaction of pgbench: a single-row UPDATE ... RETURNING, as a claim is, and its commit.
\set id random(1, 1000)
UPDATE bench_rows SET n = n + 1 WHERE id = :id RETURNING n;

-- name: explain_nested
-- Every statement this connection runs from now on, including those inside the queue's
-- functions, comes back to it as a NOTICE with its plan, row counts, timings and buffers
-- (auto_explain ships with PostgreSQL; LOAD needs a superuser, as the bench's server gives).
LOAD 'auto_explain';
SET auto_explain.log_min_duration = 0;
SET auto_explain.log_analyze = on;
SET auto_explain.log_buffers = on;
SET auto_explain.log_timing = on;
SET auto_explain.log_nested_statements = on;
SET auto_explain.log_level = notice;
SET client_min_messages = notice;

-- name: pgqueuer_remaining
-- The peers' jobs not done yet, as their own tables say. pgqueuer moves a finished job out of its
-- queue table (into pgqueuer_log): every row left there is queued or picked.
SELECT count(*) FROM pgqueuer;

-- name: procrastinate_remaining
-- procrastinate keeps finished jobs in procrastinate_jobs (its default, delete_jobs="never"),
-- with their final status.
SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing');
