-- What the kit asks about the pipelines of a lab (the model both queue designs share).

-- name: pipeline_ids
SELECT pipe_id FROM pipelines ORDER BY pipe_id;

-- name: pipe_order
SELECT pipe_order FROM pipelines WHERE pipe_id = %(pipe_id)s;

-- name: serves_a_step
-- Whether any pipeline has a step for this process (name and version).
SELECT EXISTS (SELECT 1 FROM pipeline_processes
                WHERE process_name = %(name)s AND process_version = %(version)s);

-- name: gate_opens_later
-- A pipe job of order N >= 2 starts when the request's last unfinished order N-1 pipe job
-- finishes; with none unfinished now, nothing starts it until more such work arrives.
-- A pipe job that got its entry job already (the hardened design starts one whose lower order
-- has finished) waits for nothing.
SELECT EXISTS (SELECT 1 FROM pipe_job_queue pj JOIN pipelines p USING (pipe_id)
                WHERE pj.request_id = %(request_id)s AND p.pipe_order = %(order)s - 1
                  AND NOT pj.pipe_job_finished)
    OR EXISTS (SELECT 1 FROM job_queue WHERE pipe_job_id = %(pipe_job_id)s);
