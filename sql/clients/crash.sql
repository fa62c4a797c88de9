-- What lesson 09's experiments (pgqueue.lab.crash) run to break the original designs on purpose,
-- and to watch the hardened one survive the same.

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

-- name: claimed_job_of
-- hardened: the first job of a pipe job a worker has claimed (each claim records an attempt).
SELECT job_id FROM job_queue WHERE pipe_job_id = %(pipe_job_id)s AND job_attempts > 0 ORDER BY job_id LIMIT 1;
