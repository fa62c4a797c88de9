-- The example pipelines of the single-call proof of concept, and the flow its README describes.
-- A step's behaviour is data: {"fan_out": N} hands N jobs to the next step (run in parallel),
-- {"gather": true} makes that process collect a whole parallel set at once. The last step of a
-- pipeline finishes the pipe job; every other step hands one job to the next.
INSERT INTO pipelines (pipe_id, pipe_name, pipe_version, pipe_type, pipe_order) VALUES
    (1, 'activities classification', '1.0.5',  'analysis', 1),
    (2, 'activities classification', '1.2.0',  'analysis', 1),
    (3, 'wearing compliance',        '1.2.0',  'analysis', 1),
    (4, 'generate reports',          '9.3.88', 'report',   2),
    (5, 'wearing compliance',        '2.0.0',  'analysis', 1);
SELECT setval('pipelines_pipe_id_seq', (SELECT max(pipe_id) FROM pipelines));

INSERT INTO pipeline_processes
       (pipe_id, process_name, process_version, process_order, process_configuration) VALUES
    -- the assigner fans out to four classifications; merging_results gathers them
    (1, 'assigner',           '1.0.0', 1, '{"fan_out": 4, "window": "1 day"}'),
    (1, 'classification',     '1.0.0', 2, '{"model": "activities-v1"}'),
    (1, 'merging_results',    '1.5.2', 3, '{"gather": true}'),
    (1, 'uploader',           '1.0.0', 4, '{"target": "results"}'),
    -- a plain chain, each step with its own configuration
    (2, 'first_process',      '1.9.2', 1, '{"sample_rate": 30}'),
    (2, 'second_process',     '2.2.0', 2, '{"smoothing": 0.2}'),
    (2, 'third_process',      '5.3.0', 3, '{"format": "parquet"}'),
    (3, 'assigner',           '1.0.0', 1, '{"window": "1 week"}'),
    (3, 'wearing_compliance', '1.5.2', 2, '{"min_hours": 10}'),
    (3, 'wc_upload',          '1.0.0', 3, '{"target": "compliance"}'),
    -- order 2: starts only when the request's order-1 pipelines are all finished
    (4, 'sumarizing_results', '1.5.2', 1, '{}'),
    (4, 'creating_report',    '1.0.0', 2, '{"format": "pdf"}'),
    -- the seed README's flow: gather metadata, work and launch a set, classify in parallel,
    -- then movemonitor gathers the results and finishes the pipe job
    (5, 'assigner',           '1.0.0', 1, '{"window": "1 day"}'),
    (5, 'wearing_compliance', '1.5.2', 2, '{"min_hours": 10, "fan_out": 4}'),
    (5, 'classification',     '1.0.0', 3, '{"model": "activities-v1"}'),
    (5, 'movemonitor',        '1.0.0', 4, '{"gather": true}');
