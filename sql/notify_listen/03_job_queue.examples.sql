-- The original's first job, inserted by hand: request 1 through example_pipe, from "TheWebsite".
SELECT create_first_job(1, 1, '{"description": "the first request", "parents": []}');
