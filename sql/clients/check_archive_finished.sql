-- Lesson 11's archive checker (pgqueue.check.archive_finished): its archives, its scene, what it reads back.

-- name: create_archives
-- Where finished work goes: the same columns as the hot tables, no index, no trigger.
CREATE TABLE job_archive (LIKE job_queue);
CREATE TABLE job_attempt_archive (LIKE job_attempts);

-- name: age_finished
-- As if the pipe jobs `ids` (and their jobs) had finished `seconds` ago.
WITH aged AS (
    UPDATE pipe_job_queue SET pipe_job_finish_timestamp = clock_timestamp() - make_interval(secs => %(seconds)s)
     WHERE pipe_job_id = ANY (%(ids)s)
    RETURNING pipe_job_id
)
UPDATE job_queue SET job_finish_timestamp = clock_timestamp() - make_interval(secs => %(seconds)s)
 WHERE pipe_job_id IN (SELECT pipe_job_id FROM aged);

-- name: finished_pipe_jobs
SELECT pipe_job_id FROM pipe_job_queue WHERE pipe_job_finished ORDER BY pipe_job_id;

-- name: running_pipe_jobs
SELECT pipe_job_id FROM pipe_job_queue WHERE NOT pipe_job_finished
   AND pipe_job_id IN (SELECT pipe_job_id FROM job_queue WHERE job_assigned_process_uuid IS NOT NULL)
 ORDER BY pipe_job_id;

-- name: finish_first_steps
-- The archive's scene: the running jobs of pipe jobs `ids` finished `seconds` ago, their attempts
-- succeeded, while their pipe jobs go on (their next step not handed over yet).
WITH done AS (
    UPDATE job_queue SET job_finished = true,
                         job_finish_timestamp = clock_timestamp() - make_interval(secs => %(seconds)s)
     WHERE pipe_job_id = ANY (%(ids)s) AND job_finished IS NULL AND job_assigned_process_uuid IS NOT NULL
    RETURNING job_id
)
UPDATE job_attempts SET attempt_ended = clock_timestamp() - make_interval(secs => %(seconds)s), outcome = 'succeeded'
 WHERE job_id IN (SELECT job_id FROM done) AND attempt_ended IS NULL;

-- name: rescued_before
-- The archive's scene: each job of pipe jobs `ids` had an attempt before its last, rescued.
INSERT INTO job_attempts (job_id, process_uuid, attempt_started, attempt_ended, outcome, error)
SELECT job_id, 'c0ffeec0ffee', clock_timestamp() - interval '1 day', clock_timestamp() - interval '1 day',
       'rescued', 'its worker went silent'
  FROM job_queue WHERE pipe_job_id = ANY (%(ids)s);

-- name: archive_rows
-- Every row of a hot table or its archive, by its key, as text: what moved must arrive unchanged.
SELECT {key}, t::text FROM {table} t ORDER BY {key};

-- name: job_of_attempts
SELECT attempt_id, job_id FROM job_attempts;

-- name: archive_scene
-- Every job of the archive's scene and what it is: finished or not, held or not, its pipe job
-- finished or not, and how many seconds ago it and its pipe job finished.
SELECT j.job_id, j.job_finished IS TRUE AS finished, j.job_assigned_process_uuid IS NOT NULL AS held,
       p.pipe_job_finished,
       round(extract(epoch FROM clock_timestamp() - p.pipe_job_finish_timestamp))::bigint AS pipe_job_age,
       round(extract(epoch FROM clock_timestamp() - j.job_finish_timestamp))::bigint AS job_age
  FROM job_queue j JOIN pipe_job_queue p USING (pipe_job_id)
 ORDER BY j.job_id;

-- name: old_enough
-- The jobs an archiving run must move: finished, of a finished pipe job that ended `seconds` ago or more.
SELECT coalesce(array_agg(j.job_id ORDER BY j.job_id), '{}') FROM job_queue j
  JOIN pipe_job_queue p USING (pipe_job_id)
 WHERE j.job_finished AND p.pipe_job_finished
   AND p.pipe_job_finish_timestamp <= clock_timestamp() - make_interval(secs => %(seconds)s);
