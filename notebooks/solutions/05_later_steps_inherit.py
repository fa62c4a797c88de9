# Solution: later steps take the pipe job's priority at the moment they are created.
import json

from pgqueue.queues import labs, single_call
from pgqueue.queues.heartbeats import Identity

labs.reset("single-call", upto="priorities", examples=True)
pipe_job = single_call.submit(pipe_id=2, priority=100)
me = single_call.Worker(Identity.new("first_process", "1.9.2"))
with labs.connect("single-call") as conn:
    (job,) = json.loads(me.find_job(conn, multi=False))   # the first step is running ...
    single_call.set_priority(pipe_job, 5)                  # ... when the request turns urgent
    (child,) = conn.execute("CALL create_jobs(%s, %s)",
                            [[job["job_id"]], json.dumps([{}])]).fetchone()[0]
    priorities = dict(conn.execute("SELECT job_id, job_priority FROM job_queue"))

print(priorities)
assert priorities[job["job_id"]] == 100  # the running job kept its own
assert priorities[child] == 5            # the next step took the new one
