-- The original's example requests, plus one through the README's flow (pipeline 5).
-- Pipe jobs 1, 3, 4 and 5 start at once (order 1). 1, 3 and 5 all begin with the assigner,
-- so they compete for it: 1 and 5 (priority 100) run before 3 (200). Pipe job 4 begins with
-- first_process and competes with nobody. Pipe job 2 (order 2) starts only once 1 and 4,
-- request 50's order-1 pipe jobs, have both finished.
INSERT INTO pipe_job_queue (pipe_job_id, request_id, pipe_id, pipe_job_priority) VALUES
    (1, 50, 1, 100),
    (2, 50, 4,  90),
    (3, 45, 1, 200),
    (4, 50, 2,  90),
    (5, 60, 5, 100);
SELECT setval('pipe_job_queue_pipe_job_id_seq', (SELECT max(pipe_job_id) FROM pipe_job_queue));
