-- The example pipelines of the notify/listen proof of concept.
-- A follow-up pipeline (order 2) shares second_process 1.5.2 with example_pipe: one running
-- second_process serves both.
INSERT INTO pipelines (pipe_id, pipe_name, pipe_version, pipe_type, pipe_order) VALUES
    (1, 'example_pipe',          '1.0.5', 'example', 1),
    (2, 'example_pipe_followup', '1.0.0', 'example', 2);
SELECT setval('pipelines_pipe_id_seq', (SELECT max(pipe_id) FROM pipelines));

INSERT INTO pipeline_processes
       (pipe_id, process_name, process_version, process_order, process_configuration) VALUES
    (1, 'first_process',  '1.0.0', 1, '{"step": "collect", "retries": 1}'),
    (1, 'second_process', '1.5.2', 2, '{"step": "transform", "threshold": 0.8}'),
    (1, 'third_process',  '1.0.0', 3, '{"step": "store", "bucket": "results"}'),
    (2, 'second_process', '1.5.2', 1, '{"step": "transform", "threshold": 0.5}'),
    (2, 'report_process', '1.0.0', 2, '{"step": "report", "format": "pdf"}');
