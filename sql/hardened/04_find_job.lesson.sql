-- Queries the hardened lessons (and their tests) show and run.

-- name: rescue_after
-- Turn the rescue threshold (a lesson shortens it, so a rescue is seen in seconds).
UPDATE queue_settings SET rescue_after = make_interval(secs => %(seconds)s);

-- name: retries
-- Turn the retry knobs: how many attempts, and the first backoff (seconds).
UPDATE queue_settings SET max_attempts = %(max_attempts)s, backoff_base = make_interval(secs => %(base)s),
                          backoff_cap = greatest(backoff_cap, make_interval(secs => %(base)s));

-- name: attempts_so_far
-- As if job `job_id` had been tried `attempts` times already (a job that failed for days).
UPDATE job_queue SET job_attempts = %(attempts)s WHERE job_id = %(job_id)s;

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

-- name: delete_every_job
-- What the originals' workers could do, and the hardened lab's worker role may not.
DELETE FROM job_queue;

-- name: read_pipelines
SELECT * FROM pipelines;

-- name: change_a_priority
SELECT set_pipe_job_priority(1, 5::smallint);

-- name: turn_a_setting
UPDATE queue_settings SET max_attempts = 100;

-- name: worker_users
-- Who the lab's workers are connected as (workers name their connections 'pgqueue worker ...').
SELECT DISTINCT usename FROM pg_stat_activity
 WHERE datname = current_database() AND application_name LIKE %(pattern)s;

-- name: chaos_processes
-- The processes of the pipelines a chaos round runs (each gets its own workers).
SELECT DISTINCT process_name, process_version FROM pipeline_processes
 WHERE pipe_id = ANY (%(pipe_ids)s) ORDER BY process_name, process_version;

-- name: chaos_pipelines
-- Each step of those pipelines, to know how many jobs a finished pipe job made.
SELECT pipe_id, process_order, process_configuration FROM pipeline_processes
 WHERE pipe_id = ANY (%(pipe_ids)s) ORDER BY pipe_id, process_order;

-- name: chaos_request
-- One request: a pipe job for each pipeline (a request's lower orders first, as a client would).
INSERT INTO pipe_job_queue (request_id, pipe_id)
SELECT (SELECT coalesce(max(request_id), 0) + 1 FROM pipe_job_queue), pipe_id
  FROM unnest(%(pipe_ids)s::integer[]) WITH ORDINALITY AS p(pipe_id, n)
 ORDER BY n
RETURNING request_id, pipe_job_id;

-- name: beaten
-- How many of these workers have sent a heartbeat (they started and asked for work).
SELECT count(*) FROM process_heartbeats WHERE process_uuid = ANY (%(uuids)s);

-- name: holders
-- The workers holding a job right now.
SELECT DISTINCT job_assigned_process_uuid FROM job_queue
 WHERE job_assigned_process_uuid IS NOT NULL AND job_finished IS NULL;

-- name: open_jobs
-- Jobs that may still move: waiting (or backing off) and running. 0 once a round has drained.
SELECT count(*) FROM job_queue WHERE job_finished IS NULL AND job_dead_timestamp IS NULL;

-- name: drain_progress
-- How far a round's jobs have got: any change means the queue still moves (a job ended, was
-- claimed, failed or rescued, an attempt began or ended).
SELECT (SELECT count(*) FROM job_queue WHERE job_finished IS NULL AND job_dead_timestamp IS NULL),
       (SELECT coalesce(sum(job_attempts), 0) FROM job_queue),
       (SELECT count(*) FROM job_attempts),
       (SELECT count(*) FROM job_attempts WHERE attempt_ended IS NOT NULL),
       (SELECT count(*) FROM job_queue WHERE job_assigned_process_uuid IS NOT NULL);

-- name: chaos_jobs
-- What happened to every job: its pipe job, its attempts (recorded, succeeded, rescued, failed)
-- and how it ended.
SELECT j.job_id, j.pipe_job_id, j.job_attempts, j.job_finished IS TRUE AS finished,
       j.job_dead_timestamp IS NOT NULL AS dead, j.job_error,
       count(a.attempt_id) AS recorded,
       count(a.attempt_id) FILTER (WHERE a.outcome = 'succeeded') AS succeeded,
       count(a.attempt_id) FILTER (WHERE a.outcome = 'rescued') AS rescued,
       count(a.attempt_id) FILTER (WHERE a.outcome = 'failed') AS failed,
       (array_agg(a.outcome ORDER BY a.attempt_id DESC))[1] AS last_outcome
  FROM job_queue j LEFT JOIN job_attempts a USING (job_id)
 GROUP BY j.job_id ORDER BY j.job_id;

-- name: chaos_pipe_jobs
-- Every pipe job: its pipeline and order, whether it finished, how many jobs it made, and
-- whether one of them was dead-lettered.
SELECT pj.pipe_job_id, pj.request_id, pj.pipe_id, p.pipe_order, pj.pipe_job_finished AS finished,
       count(j.job_id) AS jobs, count(j.job_dead_timestamp) > 0 AS has_dead
  FROM pipe_job_queue pj JOIN pipelines p USING (pipe_id)
  LEFT JOIN job_queue j ON j.pipe_job_id = pj.pipe_job_id
 GROUP BY pj.pipe_job_id, p.pipe_order ORDER BY pj.pipe_job_id;

-- name: early_gates
-- Requests whose order-2 work began before the last of their order-1 pipe jobs finished (or
-- while one is still unfinished): the first job of an order-2 pipe job is made in the
-- transaction that finishes the last order-1 pipe job, so its timestamp comes later.
WITH lower AS (
    SELECT pj.request_id, bool_or(NOT pj.pipe_job_finished) AS open,
           max(pj.pipe_job_finish_timestamp) AS done
      FROM pipe_job_queue pj JOIN pipelines p USING (pipe_id)
     WHERE p.pipe_order = 1 GROUP BY pj.request_id
), upper AS (
    SELECT pj.request_id, min(j.job_create_timestamp) AS started
      FROM pipe_job_queue pj JOIN pipelines p USING (pipe_id) JOIN job_queue j USING (pipe_job_id)
     WHERE p.pipe_order = 2 GROUP BY pj.request_id
)
SELECT upper.request_id FROM upper JOIN lower USING (request_id)
 WHERE lower.open OR upper.started <= lower.done ORDER BY upper.request_id;

-- name: create_plain_role
-- A role that may create databases but not roles, as managed servers often hand out.
CREATE ROLE {role} LOGIN CREATEDB;

-- name: every_table
-- Every table of the lab, its rows counted and checksummed: a refused call changes none.
SELECT 'pipelines' AS table_name, count(*) AS row_count,
       md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) AS checksum FROM pipelines t
UNION ALL
SELECT 'pipeline_processes', count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), ''))
  FROM pipeline_processes t
UNION ALL
SELECT 'process_heartbeats', count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), ''))
  FROM process_heartbeats t
UNION ALL
SELECT 'queue_settings', count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), ''))
  FROM queue_settings t
UNION ALL
SELECT 'pipe_job_queue', count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), ''))
  FROM pipe_job_queue t
UNION ALL
SELECT 'job_queue', count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM job_queue t
UNION ALL
SELECT 'job_attempts', count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), ''))
  FROM job_attempts t
UNION ALL
SELECT 'pgqueue_applied_steps', count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), ''))
  FROM pgqueue_applied_steps t;

-- name: lab_tables
-- The tables of the lab, from the catalog (every_table must name each one).
SELECT c.relname FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p') AND s.nspname = current_schema()
 ORDER BY c.relname;

-- name: flawed_pipelines
-- Two pipelines no pipe job may use: 6 lacks its step 2, 7 has no step at all.
INSERT INTO pipelines (pipe_id, pipe_name, pipe_version, pipe_order)
VALUES (6, 'missing a step', '1.0.0', 1), (7, 'no steps', '1.0.0', 1);
INSERT INTO pipeline_processes (pipe_id, process_name, process_version, process_order)
VALUES (6, 'step_one', '1.0.0', 1), (6, 'step_three', '1.0.0', 3);

-- name: insert_pipe_job
-- A pipe job as a client inserts it, every column given (NULL included).
INSERT INTO pipe_job_queue (request_id, pipe_id, pipe_job_priority, pipe_job_finished)
VALUES (%(request_id)s, %(pipe_id)s, %(priority)s, %(finished)s)
RETURNING pipe_job_id;

-- name: insert_numbered_pipe_job
INSERT INTO pipe_job_queue (pipe_job_id, request_id, pipe_id)
VALUES (%(pipe_job_id)s, %(request_id)s, %(pipe_id)s);

-- name: set_priority_as_given
-- set_pipe_job_priority with its arguments as the caller typed them (no cast on the way).
SELECT set_pipe_job_priority(%(pipe_job_id)s, %(priority)s);

-- name: heartbeat_of
SELECT process_name, process_version, server_name FROM process_heartbeats WHERE process_uuid = %(uuid)s;

-- name: start_pipe_job_now
-- What a broken gate does: start a pipe job at once, whatever its lower orders are doing.
CALL create_entry_job(%(pipe_job_id)s, %(pipe_id)s, 100::smallint, '{}'::jsonb);

-- name: succeed_again
-- A second success of a job, as a queue that runs a job twice would record it.
INSERT INTO job_attempts (job_id, process_uuid, attempt_ended, outcome)
VALUES (%(job_id)s, %(uuid)s, clock_timestamp(), 'succeeded');

-- name: queue_settings
SELECT extract(epoch FROM rescue_after)::float8 AS rescue_after_s, max_attempts FROM queue_settings;
