-- What the bloat lesson (11) runs: a burst of claims and finishes, the table's statistics, the
-- claim's plan with the pages it read, VACUUM, and the settings that keep a hot table small.

-- name: add_pipe_jobs
-- `jobs` new pipe jobs of pipeline 2 (first_process, second_process, third_process): each
-- starts with one waiting job of first_process 1.9.2, made by the pipe job's trigger.
INSERT INTO pipe_job_queue (request_id, pipe_id)
SELECT (SELECT coalesce(max(request_id), 0) FROM pipe_job_queue) + n, 2
  FROM generate_series(1, %(jobs)s) AS n;

-- name: claim_burst
-- What the originals' find_job does to a claimed row, for every waiting first_process job at once.
UPDATE job_queue SET job_assigned_process_uuid = %(uuid)s, job_assign_timestamp = clock_timestamp()
 WHERE coalesce(job_assigned_process_uuid, '') = '' AND job_finished IS NULL
   AND job_process_name = 'first_process' AND job_process_version = '1.9.2';

-- name: lease_burst
-- The hardened claim itself (claim_jobs: SKIP LOCKED, the lease, an attempt per job), for every
-- waiting first_process job at once.
SELECT json_array_length(coalesce(claim_jobs(%(uuid)s, 'first_process', '1.9.2', %(jobs)s), '[]'));

-- name: finish_burst
-- What finish_pipe does to the rows: the jobs `uuid` holds end, and so do their pipe jobs.
WITH done AS (
    UPDATE job_queue SET job_finished = true, job_finish_timestamp = clock_timestamp()
     WHERE job_assigned_process_uuid = %(uuid)s AND job_finished IS NULL
    RETURNING pipe_job_id
)
UPDATE pipe_job_queue SET pipe_job_finished = true, pipe_job_finish_timestamp = clock_timestamp()
 WHERE pipe_job_id IN (SELECT pipe_job_id FROM done);

-- name: end_attempts
-- hardened: the attempts of the jobs `uuid` finished end as succeeded (as finish_jobs does).
UPDATE job_attempts SET attempt_ended = clock_timestamp(), outcome = 'succeeded'
 WHERE process_uuid = %(uuid)s AND attempt_ended IS NULL;

-- name: flush_stats
-- PostgreSQL 15+ sends a backend's counts to the statistics at most once a second, unless asked.
SELECT pg_stat_force_next_flush();

-- name: table_stats
-- What the statistics say of a table: live and dead rows, updates (HOT ones apart), its size.
SELECT n_live_tup AS live, n_dead_tup AS dead, n_tup_upd AS updates, n_tup_hot_upd AS hot_updates,
       pg_relation_size(relid) AS bytes, pg_relation_size(relid) / current_setting('block_size')::int AS pages,
       vacuum_count + autovacuum_count AS vacuums
  FROM pg_stat_user_tables WHERE relname = %(table)s AND schemaname = current_schema();

-- name: hardened_claim_plan
-- The hardened claim's SELECT (claim_jobs), run for real: its plan and the pages it read.
EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)
SELECT job_id FROM job_queue
 WHERE job_assigned_process_uuid IS NULL AND job_finished IS NULL AND job_dead_timestamp IS NULL
   AND job_process_name = 'first_process' AND job_process_version = '1.9.2'
   AND job_run_after <= clock_timestamp()
 ORDER BY job_priority, job_create_timestamp
 LIMIT 1
   FOR UPDATE SKIP LOCKED;

-- name: original_claim_plan
-- single-call's pick (find_job), run for real: its plan and the pages it read.
EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)
SELECT * FROM job_queue
 WHERE coalesce(job_assigned_process_uuid, '') = ''
   AND job_finished IS NULL
   AND job_process_name = 'first_process' AND job_process_version = '1.9.2'
 ORDER BY job_priority, job_create_timestamp
 LIMIT 1
   FOR UPDATE;

-- name: take_xid
-- A transaction id for the open transaction, as its first write would take one: VACUUM keeps
-- every row version newer than a running transaction's id, snapshot or not.
SELECT pg_current_xact_id();

-- name: take_snapshot
-- A read in a REPEATABLE READ transaction: its snapshot lives until the transaction ends, and
-- VACUUM may not remove a row version that snapshot could still see.
SELECT count(*) FROM pipelines;

-- name: holder
-- The oldest transaction id a session's snapshot can still see (NULL: it holds nothing back).
SELECT pid, state, backend_xmin::text::bigint AS backend_xmin,
       round(extract(epoch FROM clock_timestamp() - xact_start)::numeric, 1)::float8 AS open_for_s
  FROM pg_stat_activity WHERE pid = %(pid)s;

-- name: vacuum_verbose
VACUUM (VERBOSE) job_queue;

-- name: autovacuum_off
-- For the experiment only: the numbers shown are ours, not those of an autovacuum run between
-- two cells.
ALTER TABLE job_queue SET (autovacuum_enabled = off);

-- name: autovacuum_for_a_queue
-- A hot table's autovacuum: back on, and triggered by 1,000 dead rows plus 1 % of the table
-- (the default waits for 50 plus 20 %: a queue of a million rows would carry 200,000 dead ones).
ALTER TABLE job_queue RESET (autovacuum_enabled);
ALTER TABLE job_queue SET (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 1000);

-- name: reloptions
SELECT c.relname, c.reloptions FROM pg_class c
 WHERE c.relname = %(table)s AND c.relnamespace = current_schema()::regnamespace;

-- name: hot_probes
-- Two tables alike but for the room each page keeps for updates (fillfactor), and an index on
-- `state` only.
CREATE TABLE hot_full  (id integer PRIMARY KEY, state text NOT NULL, touched integer NOT NULL,
                        pad text NOT NULL) WITH (fillfactor = 100, autovacuum_enabled = off);
CREATE TABLE hot_roomy (id integer PRIMARY KEY, state text NOT NULL, touched integer NOT NULL,
                        pad text NOT NULL) WITH (fillfactor = 70, autovacuum_enabled = off);
CREATE INDEX ON hot_full (state);
CREATE INDEX ON hot_roomy (state);

-- name: fill_probe
INSERT INTO {table} (id, state, touched, pad)
SELECT n, 'waiting', 0, repeat('x', 100) FROM generate_series(1, %(rows)s) AS n;

-- name: touch_quarter
-- An update of a column no index holds, on one row in four.
UPDATE {table} SET touched = touched + 1 WHERE mod(id, 4) = 0;

-- name: move_quarter
-- An update of an indexed column (as a claim changes the columns of job_queue's partial indexes).
UPDATE {table} SET state = 'done' WHERE mod(id, 4) = 2;

-- name: partition_probes
-- Finished work kept two ways: one table, and one partition per day (the primary key must hold
-- the partition key). No autovacuum, so what each removal leaves behind stays visible.
CREATE TABLE done_in_one (id integer PRIMARY KEY, finished_on date NOT NULL, pad text NOT NULL)
    WITH (autovacuum_enabled = off);
CREATE TABLE done_by_day (id integer NOT NULL, finished_on date NOT NULL, pad text NOT NULL,
                          PRIMARY KEY (id, finished_on)) PARTITION BY RANGE (finished_on);
CREATE TABLE done_day_1 PARTITION OF done_by_day FOR VALUES FROM ('2026-01-01') TO ('2026-01-02')
    WITH (autovacuum_enabled = off);
CREATE TABLE done_day_2 PARTITION OF done_by_day FOR VALUES FROM ('2026-01-02') TO ('2026-01-03')
    WITH (autovacuum_enabled = off);

-- name: fill_days
-- Half the rows finished on day 1, half on day 2.
INSERT INTO {table} (id, finished_on, pad)
SELECT n, date '2026-01-01' + mod(n, 2), repeat('x', 100) FROM generate_series(1, %(rows)s) AS n;

-- name: delete_day_1
DELETE FROM done_in_one WHERE finished_on < date '2026-01-02';

-- name: drop_day_1
-- The whole day goes at once: its files are removed, nothing is left for VACUUM.
ALTER TABLE done_by_day DETACH PARTITION done_day_1;
DROP TABLE done_day_1;

-- name: kept_bytes
-- The size on disk of a table, or of every partition of a partitioned one, indexes included.
-- (a partitioned table itself takes no space; pg_partition_tree lists nothing for a plain one)
WITH t AS (SELECT %(table)s::regclass AS rel)
SELECT (pg_total_relation_size(rel)
        + coalesce((SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree(rel)
                     WHERE relid <> rel), 0))::bigint
  FROM t;

-- name: rows_in
SELECT count(*) FROM {table};

-- name: others_holding_back
-- Sessions of this database besides this one whose snapshot or transaction id holds VACUUM's
-- horizon back (a VACUUM's own is ignored by VACUUM): what an experiment waits to be gone.
SELECT coalesce(string_agg(format('%s (%s, %s)', pid, coalesce(application_name, ''), state), ', '), '')
  FROM pg_stat_activity
 WHERE datname = current_database() AND pid <> pg_backend_pid()
   AND (backend_xmin IS NOT NULL OR backend_xid IS NOT NULL)
   AND backend_type <> 'autovacuum worker';
