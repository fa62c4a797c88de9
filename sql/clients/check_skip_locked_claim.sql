-- Lesson 10's checker (pgqueue.check.skip_locked_claim): its scene on a scratch single-call lab,
-- and what a probe session reads of the locks the callers hold.

-- name: exercise_first_id
-- The scene's job ids start after `first`: no id of one scene means the same in the next.
SELECT setval(pg_get_serial_sequence('job_queue', 'job_id'), %(first)s);

-- name: exercise_requests
-- `count` pipe jobs of pipeline 2, one entry job each.
INSERT INTO pipe_job_queue (request_id, pipe_id) SELECT n, 2 FROM generate_series(1, %(count)s) n;

-- name: exercise_jobs
SELECT job_id FROM job_queue ORDER BY job_id;

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
