# Solution: one request through pipeline 1 (order 1) and pipeline 4 (order 2).
from pgqueue.lab import demo
from pgqueue.queues import fleet, labs, single_call
from pgqueue.ui import figures, panels
from pgqueue.wait import until

labs.reset("single-call", upto="order_gating")
with labs.connect("single-call") as conn:
    conn.execute(labs.step("single-call", "pipelines").example_sql)
panels.PriorityPanel().submit([1, 4], request_id=90, priority=50)
with fleet.Fleet("single-call") as workers:
    panel = panels.FleetPanel(workers, single_call.Options(poll=0.1, work=(0.0, 0.02)))
    for name, version, count in demo.LAUNCHER:
        if name != "classification" or version != "9.1.0":  # no pipeline asks for that one
            panel.start(name, version, count)
    until(lambda: single_call.job_counts()["pipe_jobs_finished"] == 2, 30, "both pipe jobs finishing")

flow = figures.job_flow(90)
print(figures.layer_sizes(flow))
# assigner, 4 classifications, 4 merges, uploader; then, behind the gate, the report's two steps
assert figures.layer_sizes(flow) == [1, 4, 4, 1, 1, 1]
