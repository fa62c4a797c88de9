-- Lesson 09's checker (pgqueue.check.dead_holders): its scene on a scratch single-call lab.

-- name: exercise_first_id
-- The exercise's job ids start after `first`, so that no id of one scene means the same in the next.
SELECT setval(pg_get_serial_sequence('job_queue', 'job_id'), %(first)s);

-- name: exercise_requests
-- The exercise's scene (single-call): `count` pipe jobs of pipeline 2, one entry job each.
INSERT INTO pipe_job_queue (request_id, pipe_id) SELECT n, 2 FROM generate_series(1, %(count)s) n;

-- name: exercise_jobs
SELECT job_id FROM job_queue ORDER BY job_id;

-- name: exercise_beat
-- A worker of first_process that last beat `beat` seconds ago; its kill switch set or not, and, if
-- `stopped`, marked as exited cleanly right after that beat.
INSERT INTO process_heartbeats (process_uuid, server_name, process_name, process_version,
                                last_beat_timestamp, process_kill_switch, process_stopped_timestamp)
VALUES (%(uuid)s, 'exercise', 'first_process', '1.9.2', clock_timestamp() - make_interval(secs => %(beat)s),
        %(killed)s, CASE WHEN %(stopped)s THEN clock_timestamp() - make_interval(secs => %(beat)s) END);

-- name: exercise_hold
-- Job `job_id` held by `uuid` (NULL or '' for nobody) since `ago` seconds, finished or not.
UPDATE job_queue
   SET job_assigned_process_uuid = %(uuid)s::varchar,
       job_assign_timestamp = CASE WHEN %(uuid)s::varchar <> '' THEN clock_timestamp() - make_interval(secs => %(ago)s) END,
       job_finished = %(finished)s, job_finish_timestamp = CASE WHEN %(finished)s THEN clock_timestamp() END
 WHERE job_id = %(job_id)s;
