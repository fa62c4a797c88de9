# Solution: group the waiting jobs (not taken, not finished) by process.
from pgqueue.queues import labs, single_call

labs.reset("single-call", upto="find_job", examples=True)
for priority in (100, 50, 70):
    single_call.submit(pipe_id=2, priority=priority)
single_call.submit(pipe_id=1)

waiting = labs.frame("single-call", """
    SELECT job_process_name, job_process_version,
           count(*) AS waiting, min(job_priority) AS best_priority
      FROM job_queue
     WHERE coalesce(job_assigned_process_uuid, '') = '' AND job_finished IS NULL
     GROUP BY job_process_name, job_process_version
     ORDER BY best_priority, job_process_name
""")
print(waiting)
assert waiting.values.tolist() == [["first_process", "1.9.2", 3, 50], ["assigner", "1.0.0", 1, 100]]
