# Solution: the fan-out width is data; movemonitor then gathers six at once.
from pgqueue.queues import fleet, labs, single_call
from pgqueue.wait import until

labs.reset("single-call", upto="gather", examples=True)
with labs.connect("single-call") as conn:
    conn.execute("""
        UPDATE pipeline_processes
           SET process_configuration = process_configuration || '{"fan_out": 6}'
         WHERE pipe_id = 5 AND process_name = 'wearing_compliance'""")
single_call.submit(pipe_id=5)
with fleet.Fleet("single-call") as workers:
    workers.launch([("assigner", "1.0.0", 1), ("wearing_compliance", "1.5.2", 1),
                    ("classification", "1.0.0", 3), ("movemonitor", "1.0.0", 1)],
                   worker_options=single_call.Options(poll=0.1, work=(0.0, 0.02)))
    until(lambda: single_call.job_counts()["pipe_jobs_finished"] == 1, 30, "the pipe job finishing")
biggest = single_call.claims()["size"].max()
print("movemonitor gathered", biggest, "jobs in one claim")
assert biggest == 6
