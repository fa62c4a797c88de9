-- Queries lesson 01 shows and runs.

-- name: neighbours_as_written
-- The original view's window: ORDER BY process_order, but no PARTITION BY pipe_id.
CREATE OR REPLACE VIEW process_neighbours_as_written AS
SELECT pipe_id,
       process_name,
       process_order,
       lag(process_name) OVER (ORDER BY process_order) AS previous_process_name
  FROM pipeline_processes;

-- name: mixed_neighbours
-- Rows where the original view names a previous process that the fixed view does not.
SELECT w.pipe_id, w.process_name, w.process_order,
       w.previous_process_name AS as_written,
       f.previous_process_name AS fixed
  FROM process_neighbours_as_written w
  JOIN process_neighbours f USING (pipe_id, process_name)
 WHERE w.previous_process_name IS DISTINCT FROM f.previous_process_name
 ORDER BY w.process_order, w.pipe_id;

-- name: pipelines_with_steps
SELECT p.pipe_id, p.pipe_name, p.pipe_version, p.pipe_order,
       n.process_order, n.process_name, n.process_version,
       n.previous_process_name, n.next_process_name
  FROM pipelines p
  JOIN process_neighbours n USING (pipe_id)
 ORDER BY p.pipe_id, n.process_order;

-- name: pipelines_using
-- Which pipelines a running process of this name and version would serve.
SELECT p.pipe_name, p.pipe_version, pp.process_order
  FROM pipeline_processes pp
  JOIN pipelines p USING (pipe_id)
 WHERE pp.process_name = %(name)s AND pp.process_version = %(version)s
 ORDER BY p.pipe_id;

-- name: neighbours
SELECT * FROM process_neighbours ORDER BY pipe_id, process_order;

-- Rows the keys of pipeline_processes must refuse (lesson 01 tries each, then rolls back).

-- name: step_twice
-- first_process is step 1 of pipeline 1 already: PRIMARY KEY (pipe_id, process_name).
INSERT INTO pipeline_processes (pipe_id, process_name, process_version, process_order)
VALUES (1, 'first_process', '1.0.0', 4);

-- name: two_steps_one_order
-- Step 2 of pipeline 1 is second_process already: UNIQUE (pipe_id, process_order). So one step
-- has at most one next step; a fan-out (lesson 06) makes many jobs for that one next process.
INSERT INTO pipeline_processes (pipe_id, process_name, process_version, process_order)
VALUES (1, 'other_process', '1.0.0', 2);

-- name: step_of_no_pipeline
-- There is no pipeline 99: the foreign key REFERENCES pipelines.
INSERT INTO pipeline_processes (pipe_id, process_name, process_version, process_order)
VALUES (99, 'first_process', '1.0.0', 1);

-- name: step_zero
-- process_order counts from 1: CHECK (process_order >= 1).
INSERT INTO pipeline_processes (pipe_id, process_name, process_version, process_order)
VALUES (1, 'before_first', '1.0.0', 0);
