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
INSERT INTO job_queue (request_id, pipe_id, job_creator_process_name, job_process_name, job_process_version)
SELECT n, %(pipe_id)s, 'bench', 'bench_noop', '1.0.0' FROM generate_series(1, %(jobs)s) AS n;

-- name: fill_pipe_job
-- single-call and hardened: `jobs` more waiting jobs of the bench's pipe job, in one statement.
INSERT INTO job_queue (pipe_job_id, pipe_id, job_process_name, job_process_version)
SELECT %(pipe_job_id)s, %(pipe_id)s, 'bench_noop', '1.0.0' FROM generate_series(1, %(jobs)s);

-- name: waiting
-- The bench's jobs nobody holds (or ever finished). The originals' "available" is NULL or ''.
SELECT count(*) FROM job_queue
 WHERE coalesce(job_assigned_process_uuid, '') = '' AND job_finished IS NOT TRUE
   AND job_process_name = 'bench_noop';

-- name: analyze
ANALYZE job_queue;

-- name: create_floor
-- The floor: the least a queue in PostgreSQL can do per job. One table, one partial index on
-- the waiting rows, nothing else (no heartbeat, no pipeline, no trigger).
CREATE TABLE floor_queue (
    id          bigserial PRIMARY KEY,
    payload     jsonb       NOT NULL DEFAULT '{}',
    claimed_by  varchar(12),
    claimed_at  timestamptz
);
CREATE INDEX floor_queue_waiting ON floor_queue (id) WHERE claimed_by IS NULL;

-- name: fill_floor
INSERT INTO floor_queue (payload) SELECT '{}' FROM generate_series(1, %(jobs)s);

-- name: floor_waiting
SELECT count(*) FROM floor_queue WHERE claimed_by IS NULL;

-- name: floor_analyze
ANALYZE floor_queue;

-- name: floor_claim
-- One job, oldest first, skipping rows another worker holds locked.
UPDATE floor_queue SET claimed_by = %(uuid)s, claimed_at = clock_timestamp()
 WHERE id = (SELECT id FROM floor_queue WHERE claimed_by IS NULL ORDER BY id
             LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING id;
