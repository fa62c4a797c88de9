# Solution: one request's flow per pipe order, in one query over job_queue, pipe_job_queue and pipelines.
from pgqueue import check

my_flow = """
SELECT p.pipe_order,
       min(j.job_create_timestamp) AS first_created,  -- the order's first job
       max(j.job_finish_timestamp) AS last_finished,  -- max skips the NULLs of unfinished jobs
       count(*) AS jobs
  FROM job_queue j
  JOIN pipe_job_queue pj USING (pipe_job_id)           -- the request lives on the pipe job
  JOIN pipelines p ON p.pipe_id = pj.pipe_id           -- the order lives on the pipeline
 WHERE pj.request_id = %(request_id)s
 GROUP BY p.pipe_order
 ORDER BY p.pipe_order;
"""
verdict = check.request_flow(my_flow)
print(verdict)
assert verdict.holds, verdict
