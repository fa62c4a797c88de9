-- What the figures and the dashboard read (single-call lab).

-- name: pipeline_steps
SELECT p.pipe_id, p.pipe_name, p.pipe_version, p.pipe_order,
       pp.process_order, pp.process_name, pp.process_version, pp.process_configuration
  FROM pipelines p JOIN pipeline_processes pp USING (pipe_id)
 ORDER BY p.pipe_order, p.pipe_id, pp.process_order;

-- name: job_history
-- Every job with its request and pipeline: what the timeline and the flow graph draw.
SELECT j.job_id, j.pipe_job_id, pj.request_id, j.pipe_id, p.pipe_name || ' ' || p.pipe_version AS pipeline,
       p.pipe_order,
       pp.process_order, j.job_process_name, j.job_process_version, j.job_assigned_process_uuid,
       j.job_finished, j.job_create_timestamp, j.job_assign_timestamp, j.job_finish_timestamp,
       j.job_set_elements, j.job_parent_set_elements,
       CASE WHEN j.job_finished THEN 'finished'
            WHEN coalesce(j.job_assigned_process_uuid, '') <> '' THEN 'running'
            ELSE 'waiting' END AS state
  FROM job_queue j
  JOIN pipe_job_queue pj USING (pipe_job_id)
  JOIN pipelines p ON p.pipe_id = j.pipe_id
  LEFT JOIN pipeline_processes pp ON pp.pipe_id = j.pipe_id AND pp.process_name = j.job_process_name
 ORDER BY j.job_id;

-- name: counts_by_process
SELECT job_process_name || ' ' || job_process_version AS process,
       count(*) FILTER (WHERE coalesce(job_assigned_process_uuid, '') = '' AND job_finished IS NULL) AS waiting,
       count(*) FILTER (WHERE coalesce(job_assigned_process_uuid, '') <> '' AND job_finished IS NULL) AS running,
       count(*) FILTER (WHERE job_finished) AS finished
  FROM job_queue GROUP BY 1 ORDER BY 1;
