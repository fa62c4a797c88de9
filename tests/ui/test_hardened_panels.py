"""Every panel and figure works on the hardened lab, which keeps single call's tables."""

import pytest

from pgqueue.lab import demo
from pgqueue.queues import fleet, hardened, heartbeats, labs
from pgqueue.ui import figures, panels
from pgqueue.wait import until

POC = "hardened"
FAST = hardened.Options(poll=0.5, work=(0.0, 0.02))


@pytest.fixture(scope="module")
def ran():
    """The example run through once by hardened workers, which stay registered (and stopped)."""
    labs.reset(POC, examples=True)
    with fleet.Fleet(POC) as workers:
        workers.launch(demo.LAUNCHER + demo.README_FLOW, worker_options=FAST)
        until(lambda: hardened.job_counts()["pipe_jobs_finished"] == 5, 60, "every pipe job finishing")
    return POC


def test_the_figures_draw_the_hardened_run(ran):
    assert figures.layer_sizes(figures.job_flow(50, POC)) == [1, 4, 4, 1, 1, 1, 1, 1, 1]
    bars = figures.worker_timeline(POC).data  # one trace per pipeline
    assert sum(len(trace.y) for trace in bars) == hardened.job_counts()["finished"] == 35
    assert len(figures.gate_times(hardened.pipe_jobs())) == 1  # request 50's order 2 opened once
    assert figures.pipeline_graph(POC).data and figures.order_gates(POC).data
    assert figures.gate_moment(50, POC).data and figures.job_times(50, POC).data


def test_the_kill_and_priority_panels_act_on_the_hardened_lab(ran):
    panel = panels.KillSwitchPanel(POC)
    assert panel.shown == []  # every worker of the run stopped: none live
    with labs.connect(POC) as conn:
        who = heartbeats.Identity.new("uploader", "1.0.0")
        heartbeats.send_heartbeat(conn, who)
    panel.refresh()
    panel.set_kill(who.uuid)
    assert heartbeats.states(POC).set_index("process_uuid").loc[who.uuid, "state"] == "killed"

    prices = panels.PriorityPanel(POC)
    prices.submit([2], request_id=80, priority=40)
    (made,) = hardened.pipe_jobs().query("request_id == 80")["pipe_job_id"]
    prices.refresh()
    prices.set_priority(int(made), 5)
    assert hardened.pipe_jobs().set_index("pipe_job_id").loc[made, "pipe_job_priority"] == 5


def test_the_dashboard_counts_the_hardened_run(ran):
    board = panels.Dashboard(POC)
    board.refresh()
    assert "first_process 1.9.2" in board.counts.value
    assert sum(len(trace.y) for trace in board.timeline.data) == 35
