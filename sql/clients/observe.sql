-- What the figures and the dashboard read (single-call lab).

-- name: pipeline_steps
SELECT p.pipe_id, p.pipe_name, p.pipe_version, p.pipe_order,
       pp.process_order, pp.process_name, pp.process_version, pp.process_configuration
  FROM pipelines p JOIN pipeline_processes pp USING (pipe_id)
 ORDER BY p.pipe_order, p.pipe_id, pp.process_order;

-- name: job_history_single_call
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

-- name: counts_by_process_single_call
SELECT job_process_name || ' ' || job_process_version AS process,
       count(*) FILTER (WHERE coalesce(job_assigned_process_uuid, '') = '' AND job_finished IS NULL) AS waiting,
       count(*) FILTER (WHERE coalesce(job_assigned_process_uuid, '') <> '' AND job_finished IS NULL) AS running,
       count(*) FILTER (WHERE job_finished) AS finished
  FROM job_queue GROUP BY 1 ORDER BY 1;

-- name: job_history_notify_listen
-- The notify/listen queue's jobs, in the same columns (it has no sets: those stay NULL).
SELECT j.job_id, NULL::integer AS pipe_job_id, j.request_id, j.pipe_id,
       p.pipe_name || ' ' || p.pipe_version AS pipeline, p.pipe_order, pp.process_order,
       j.job_process_name, j.job_process_version, j.job_assigned_process_uuid, j.job_finished,
       j.job_create_timestamp, j.job_assign_timestamp, j.job_finished_timestamp AS job_finish_timestamp,
       NULL::integer[] AS job_set_elements, NULL::integer[] AS job_parent_set_elements,
       CASE WHEN j.job_finished THEN 'finished'
            WHEN j.job_assigned_process_uuid IS NOT NULL THEN 'running'
            ELSE 'waiting' END AS state
  FROM job_queue j
  JOIN pipelines p ON p.pipe_id = j.pipe_id
  LEFT JOIN pipeline_processes pp ON pp.pipe_id = j.pipe_id AND pp.process_name = j.job_process_name
 ORDER BY j.job_id;

-- name: counts_by_process_notify_listen
SELECT job_process_name || ' ' || job_process_version AS process,
       count(*) FILTER (WHERE job_assigned_process_uuid IS NULL) AS waiting,
       count(*) FILTER (WHERE job_assigned_process_uuid IS NOT NULL AND NOT job_finished) AS running,
       count(*) FILTER (WHERE job_finished) AS finished
  FROM job_queue GROUP BY 1 ORDER BY 1;

-- name: processes
-- Every process a pipeline asks for: what the fleet panel offers to start.
SELECT DISTINCT process_name, process_version FROM pipeline_processes ORDER BY 1, 2;
