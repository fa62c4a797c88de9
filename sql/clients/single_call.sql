-- What the single-call worker, the fleet and the command line send.

-- name: find_job
SELECT find_job(%(uuid)s, %(server)s, %(name)s, %(version)s, %(multi)s);

-- name: create_jobs
-- Procedures, as in the original: CALL, not SELECT. create_jobs's result row holds the new ids.
CALL create_jobs(%(job_ids)s, %(payloads)s);

-- name: finish_pipe
CALL finish_pipe(%(job_ids)s, %(pipe_job_id)s);

-- name: gathers
-- Whether this process gathers parallel sets in any pipeline that uses it.
SELECT coalesce(bool_or((process_configuration ->> 'gather')::boolean), false)
  FROM pipeline_processes
 WHERE process_name = %(name)s AND process_version = %(version)s;

-- name: is_last_step
SELECT NOT EXISTS (
    SELECT 1 FROM pipeline_processes later
      JOIN pipeline_processes this ON this.pipe_id = later.pipe_id
     WHERE this.pipe_id = %(pipe_id)s AND this.process_name = %(name)s
       AND later.process_order > this.process_order);

-- name: submit
INSERT INTO pipe_job_queue (request_id, pipe_id, pipe_job_priority)
VALUES (%(request_id)s, %(pipe_id)s, %(priority)s)
RETURNING pipe_job_id;

-- name: next_request_id
SELECT coalesce(max(request_id), 0) + 1 FROM pipe_job_queue;

-- name: set_priority
SELECT set_pipe_job_priority(%(pipe_job_id)s, %(priority)s::smallint);

-- name: job_counts
SELECT (SELECT count(*) FROM job_queue
         WHERE coalesce(job_assigned_process_uuid, '') = '' AND job_finished IS NULL) AS waiting,
       (SELECT count(*) FROM job_queue
         WHERE coalesce(job_assigned_process_uuid, '') <> '' AND job_finished IS NULL) AS running,
       (SELECT count(*) FROM job_queue WHERE job_finished)                           AS finished,
       (SELECT count(*) FROM pipe_job_queue WHERE pipe_job_finished)                 AS pipe_jobs_finished,
       (SELECT count(*) FROM pipe_job_queue)                                         AS pipe_jobs;

-- name: jobs
SELECT job_id, pipe_job_id, pipe_id, job_process_name, job_process_version, job_priority,
       job_assigned_process_uuid, job_finished, job_set_elements, job_creater_set_elements,
       job_parent_set_elements, job_create_timestamp, job_assign_timestamp, job_finish_timestamp,
       job_process_config, job_payload
  FROM job_queue ORDER BY job_id;

-- name: pipe_jobs
SELECT pj.pipe_job_id, pj.request_id, pj.pipe_id, p.pipe_name, p.pipe_version, p.pipe_order,
       pj.pipe_job_priority, pj.pipe_job_finished,
       (SELECT min(job_create_timestamp) FROM job_queue j WHERE j.pipe_job_id = pj.pipe_job_id)
           AS started,
       pj.pipe_job_finish_timestamp AS finished,
       (SELECT count(*) FROM job_queue j WHERE j.pipe_job_id = pj.pipe_job_id) AS jobs
  FROM pipe_job_queue pj JOIN pipelines p USING (pipe_id)
 ORDER BY pj.pipe_job_id;

-- name: claims
-- Every claim: the set of jobs one find_job call handed out together, with its pipe job.
SELECT c.claimed_job_ids, cardinality(c.claimed_job_ids) AS size, c.claimer_uuid,
       c.claim_timestamp, j.pipe_job_id
  FROM job_queue_claim c JOIN job_queue j ON j.job_id = c.claimed_job_ids[1]
 ORDER BY c.claim_timestamp;
