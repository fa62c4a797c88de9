-- What the failure lab runs to break the original designs on purpose, and to watch the hardened
-- one survive the same (pgqueue.lab.failures). Each lesson of the lab has its own section.

-- ============================================================================================
-- Lesson 09: a worker SIGKILLed after its claim, a NOTIFY nobody hears
-- ============================================================================================

-- name: held_by
-- The unfinished jobs a worker holds (job_finished is false or NULL while a job runs, by design).
SELECT job_id FROM job_queue
 WHERE job_assigned_process_uuid = %(uuid)s AND job_finished IS NOT TRUE
 ORDER BY job_id;

-- name: job_state
-- One job as every design stores it: who must run it, who holds it, since when, whether done.
SELECT job_id, job_process_name, job_process_version, job_assigned_process_uuid,
       job_assign_timestamp, job_finished
  FROM job_queue WHERE job_id = %(job_id)s;

-- name: silent_for
-- How long ago a worker last beat (a SIGKILLed worker simply stops).
SELECT extract(epoch FROM clock_timestamp() - last_beat_timestamp)::float8
  FROM process_heartbeats WHERE process_uuid = %(uuid)s;

-- name: steps_of
-- The processes of some pipelines, one worker each for the lesson.
SELECT DISTINCT process_name, process_version FROM pipeline_processes
 WHERE pipe_id = ANY (%(pipe_ids)s) ORDER BY process_name, process_version;

-- name: request_jobs
-- notify-listen: every job of one request, the chain its steps made so far.
SELECT job_id, job_process_name, job_process_version, job_assigned_process_uuid, job_finished
  FROM job_queue WHERE request_id = %(request_id)s ORDER BY job_id;

-- name: request_pipe_jobs
-- single-call and hardened: every pipe job of one request, with its jobs still open.
SELECT pj.pipe_job_id, p.pipe_name, p.pipe_order, pj.pipe_job_finished,
       (SELECT count(*) FROM job_queue j WHERE j.pipe_job_id = pj.pipe_job_id) AS jobs,
       (SELECT count(*) FROM job_queue j
         WHERE j.pipe_job_id = pj.pipe_job_id AND j.job_finished IS NOT TRUE) AS open_jobs
  FROM pipe_job_queue pj JOIN pipelines p USING (pipe_id)
 WHERE pj.request_id = %(request_id)s ORDER BY pj.pipe_job_id;

-- name: stalled_pipe_jobs
-- single-call: the pipe jobs that never finished (after a run has gone quiet).
SELECT pj.pipe_job_id, pj.request_id, p.pipe_name, p.pipe_order,
       (SELECT count(*) FROM job_queue j WHERE j.pipe_job_id = pj.pipe_job_id) AS jobs
  FROM pipe_job_queue pj JOIN pipelines p USING (pipe_id)
 WHERE NOT pj.pipe_job_finished ORDER BY pj.pipe_job_id;

-- name: clear_claim
-- What an operator would try first: hand the dead worker's job back by hand.
UPDATE job_queue SET job_assigned_process_uuid = NULL, job_assign_timestamp = NULL
 WHERE job_id = %(job_id)s;

-- name: claims_of
-- single-call: the claim-table rows naming a job (its primary key is the set of job ids).
SELECT claimed_job_ids, claimer_uuid, claim_timestamp FROM job_queue_claim
 WHERE %(job_id)s = ANY (claimed_job_ids);

-- name: poison_job
-- notify-listen: a job for the first step of pipeline `pipe_id`, inserted directly (as a
-- careless client would), its payload `bytes` long: past create_first_job's guard.
INSERT INTO job_queue (request_id, pipe_id, job_payload, job_creater_process_name,
                       job_process_name, job_process_version, job_process_config)
SELECT %(request_id)s, pp.pipe_id, jsonb_build_object('blob', repeat('x', %(bytes)s)), 'a careless client',
       pp.process_name, pp.process_version, pp.process_configuration
  FROM pipeline_processes pp WHERE pp.pipe_id = %(pipe_id)s AND pp.process_order = 1
RETURNING job_id;

-- name: notify_bytes
-- notify-listen: each job's size as the heartbeat's NOTIFY would send it (lesson 03's function).
SELECT job_id, job_assigned_process_uuid, job_notify_bytes(j) AS notify_bytes
  FROM job_queue j ORDER BY job_id;

-- name: wake_channel
-- hardened: the channel that wakes the workers of one process name and version.
SELECT wake_channel(%(name)s, %(version)s);

-- name: silence_wake_ups
-- hardened: no NOTIFY for new jobs from now on, as if every wake-up were lost.
ALTER TABLE job_queue DISABLE TRIGGER new_jobs_wake_workers;

-- name: restore_wake_ups
ALTER TABLE job_queue ENABLE TRIGGER new_jobs_wake_workers;

-- name: claimed_jobs_of
-- hardened: the jobs of a pipe job and their attempts so far.
SELECT job_id, job_assigned_process_uuid, job_attempts, job_finished
  FROM job_queue WHERE pipe_job_id = %(pipe_job_id)s ORDER BY job_id;

-- name: exercise_first_id
-- The exercise's job ids start after `first`, so that no id of one scene means the same in the next.
SELECT setval(pg_get_serial_sequence('job_queue', 'job_id'), %(first)s);

-- name: exercise_requests
-- The exercise's scene (single-call): `count` pipe jobs of pipeline 2, one entry job each.
INSERT INTO pipe_job_queue (request_id, pipe_id) SELECT n, 2 FROM generate_series(1, %(count)s) n;

-- name: exercise_jobs
SELECT job_id FROM job_queue ORDER BY job_id;

-- name: exercise_beat
-- A worker of first_process that last beat `seconds` ago; its kill switch set or not, and, if
-- `stopped`, marked as exited cleanly right after that beat.
INSERT INTO process_heartbeats (process_uuid, server_name, process_name, process_version,
                                last_beat_timestamp, process_kill_switch, process_stopped_timestamp)
VALUES (%(uuid)s, 'exercise', 'first_process', '1.9.2', clock_timestamp() - make_interval(secs => %(seconds)s),
        %(killed)s, CASE WHEN %(stopped)s THEN clock_timestamp() - make_interval(secs => %(seconds)s) END);

-- name: exercise_hold
-- Job `job_id` held by `uuid` (NULL or '' for nobody) since `ago` seconds, finished or not.
UPDATE job_queue
   SET job_assigned_process_uuid = %(uuid)s::varchar,
       job_assign_timestamp = CASE WHEN %(uuid)s::varchar <> '' THEN clock_timestamp() - make_interval(secs => %(ago)s) END,
       job_finished = %(finished)s, job_finish_timestamp = CASE WHEN %(finished)s THEN clock_timestamp() END
 WHERE job_id = %(job_id)s;

-- ============================================================================================
-- Lesson 10: races for a job
-- ============================================================================================

-- name: race_notify_job
-- notify-listen: one job for first_process 1.0.0, as a website would make it.
SELECT create_first_job(%(request_id)s, 1, '{}'::jsonb);

-- name: race_next_request
-- notify-listen, single-call and hardened: the next free request id.
SELECT coalesce(max(request_id), 0) + 1 FROM job_queue;

-- name: race_submit
-- single-call and hardened: a pipe job of `pipe_id` for request `request_id`.
INSERT INTO pipe_job_queue (request_id, pipe_id, pipe_job_priority)
VALUES (%(request_id)s, %(pipe_id)s, %(priority)s)
RETURNING pipe_job_id;

-- name: race_next_pipe_request
SELECT coalesce(max(request_id), 0) + 1 FROM pipe_job_queue;

-- name: race_attempts_of
-- hardened: the attempts recorded for one job: one per execution.
SELECT count(*) FROM job_attempts WHERE job_id = %(job_id)s;

-- name: race_entry_jobs_of
-- The entry jobs a pipe job got: 0 while its order waits, 1 once started, 2 if started twice.
SELECT count(*) FROM job_queue WHERE pipe_job_id = %(pipe_job_id)s AND job_creater_process_uuid IS NULL;

-- name: race_pipe_job_finished
SELECT pipe_job_finished FROM pipe_job_queue WHERE pipe_job_id = %(pipe_job_id)s;

-- name: claim_scene_job
-- The claim exercise's scene: job `job_id` of process `name` `version` at priority `priority`,
-- made `ago` seconds ago (whole seconds apart: no two jobs tie on their age), held by `uuid`
-- (NULL or '' for nobody), finished or not.
UPDATE job_queue
   SET job_priority = %(priority)s, job_process_name = %(name)s, job_process_version = %(version)s,
       job_create_timestamp = clock_timestamp() - make_interval(secs => %(ago)s),
       job_assigned_process_uuid = %(uuid)s::varchar,
       job_assign_timestamp = CASE WHEN %(uuid)s::varchar <> '' THEN clock_timestamp() END,
       job_finished = %(finished)s, job_finish_timestamp = CASE WHEN %(finished)s THEN clock_timestamp() END
 WHERE job_id = %(job_id)s;

-- name: claim_scene_store
-- The claim exercise's jobs stored by priority, the newer first within one: a claim's scan reads them
-- so. The index goes once the table is rewritten, so that no plan reads the jobs through it.
CREATE INDEX claim_scene_stored ON job_queue (job_priority, job_create_timestamp DESC);
CLUSTER job_queue USING claim_scene_stored;
DROP INDEX claim_scene_stored;

-- name: claim_scene_stored
-- The jobs in the order they are stored (a sequential scan reads them so), and in the order wanted.
SELECT array_agg(job_id ORDER BY ctid), array_agg(job_id ORDER BY job_priority, job_create_timestamp DESC)
  FROM job_queue;

-- name: claim_lockable_update
-- Which of the jobs `ids` another session could lock FOR UPDATE now: those no open transaction holds
-- a row lock on, in any mode (FOR UPDATE conflicts with every row lock, FOR KEY SHARE included).
SELECT job_id FROM job_queue WHERE job_id = ANY (%(ids)s) FOR UPDATE SKIP LOCKED;

-- name: claim_lockable_no_key
-- Which of the jobs `ids` another session could lock FOR NO KEY UPDATE now (as a claim's UPDATE
-- does): a row held FOR KEY SHARE only is among them, one held FOR SHARE or stronger is not.
SELECT job_id FROM job_queue WHERE job_id = ANY (%(ids)s) FOR NO KEY UPDATE SKIP LOCKED;

-- name: claim_lockable_share
-- Which of the jobs `ids` another session could lock FOR SHARE now: all but those held FOR NO KEY
-- UPDATE or FOR UPDATE.
SELECT job_id FROM job_queue WHERE job_id = ANY (%(ids)s) FOR SHARE SKIP LOCKED;

-- name: claim_pipes_locked
-- The pipe jobs some open transaction holds a row lock on: a claim that locks pipe_job_queue's row
-- leaves job_queue's free.
SELECT pipe_job_id FROM pipe_job_queue
 WHERE pipe_job_id NOT IN (SELECT pipe_job_id FROM pipe_job_queue FOR UPDATE SKIP LOCKED)
 ORDER BY pipe_job_id;

-- name: claim_advisory_keys
-- The advisory locks the sessions `pids` hold, as the one bigint key pg_advisory_lock(bigint) and
-- its try and xact siblings take (PostgreSQL splits it into classid, the high half, and objid).
SELECT (classid::bigint << 32) | objid::bigint AS key FROM pg_locks
 WHERE locktype = 'advisory' AND granted AND objsubid = 1 AND pid = ANY (%(pids)s)
 ORDER BY key;
