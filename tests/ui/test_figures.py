"""Figures built from known, hand-made histories have exactly the nodes, edges, bars and gates expected."""

import pandas as pd

from pgqueue.ui import figures

T0 = pd.Timestamp("2026-01-01 12:00:00", tz="UTC")


def at(seconds: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(seconds=seconds)


def drawn(value) -> pd.Timestamp:
    """A time as a figure holds it (plotly stores UTC times without their zone)."""
    stamp = pd.Timestamp(value)
    return stamp if stamp.tzinfo else stamp.tz_localize("UTC")


def job(
    job_id,
    process,
    order,
    parents=None,
    worker=None,
    start=None,
    end=None,
    request=1,
    pipe=1,
    pipe_order=1,
    pipe_job=1,
):
    state = "finished" if end is not None else "running" if worker else "waiting"
    return {
        "job_id": job_id,
        "pipe_job_id": pipe_job,
        "request_id": request,
        "pipe_id": pipe,
        "pipeline": f"pipe {pipe}",
        "pipe_order": pipe_order,
        "process_order": order,
        "job_process_name": process,
        "job_process_version": "1.0.0",
        "job_assigned_process_uuid": worker,
        "job_finished": True if end is not None else None,
        "job_create_timestamp": at(job_id),
        "job_assign_timestamp": at(start) if start is not None else pd.NaT,
        "job_finish_timestamp": at(end) if end is not None else pd.NaT,
        "job_set_elements": None,
        "job_parent_set_elements": parents,
        "state": state,
    }


def fan_out_request() -> pd.DataFrame:
    """Request 1: an assigner fans out to four classifications; their four results are gathered
    by one merge, which hands over to an uploader that is still running."""
    rows = [job(1, "assigner", 1, None, "aaaaaaaaaaaa", 0, 1)]
    rows += [job(n, "classification", 2, [1], "bbbbbbbbbbbb", n, n + 0.5) for n in (2, 3, 4, 5)]
    rows += [job(n, "merging", 3, [n - 4], "cccccccccccc", 9, 10) for n in (6, 7, 8, 9)]
    rows += [job(10, "uploader", 4, [6, 7, 8, 9], "aaaaaaaaaaaa", 11)]
    rows += [job(11, "assigner", 1, None, request=2)]  # another request: not drawn
    return pd.DataFrame(rows)


def test_job_flow_has_the_fan_out_and_its_gathering():
    fig = figures.job_flow_figure(fan_out_request(), request_id=1)
    assert figures.layer_sizes(fig) == [1, 4, 4, 1]
    edges = fig.data[0]
    assert edges.name == "parent -> child"
    assert len(edges.x) == 3 * (4 + 4 + 4)  # each edge is (from, to, gap)
    by_state = {t.name: sorted(int(n) for n in t.text) for t in fig.data[1:]}
    assert by_state == {"finished": [1, 2, 3, 4, 5, 6, 7, 8, 9], "running": [10]}


def test_worker_timeline_draws_one_bar_per_taken_job_per_worker():
    history = fan_out_request()
    workers = pd.DataFrame(
        {
            "process_uuid": ["aaaaaaaaaaaa", "bbbbbbbbbbbb", "cccccccccccc"],
            "process_name": ["assigner", "classification", "merging"],
            "process_version": ["1.0.0"] * 3,
        }
    )
    fig = figures.worker_timeline_figure(history, workers, gates=[at(10.5)])
    (bars,) = fig.data
    assert len(bars.y) == 10  # every job someone took, none that waits
    assert list(bars.y).count("classification 1.0.0 [bbbbbbbbbbbb]") == 4
    assert list(bars.x[:1]) == [1000.0]  # the assigner's job: 0 s -> 1 s
    assert drawn(bars.base[0]) == at(0)
    assert [drawn(s.x0) for s in fig.layout.shapes] == [at(10.5)]


def test_order_gates_show_order_two_after_order_one():
    pipe_jobs = pd.DataFrame(
        [
            {
                "pipe_job_id": 1,
                "request_id": 50,
                "pipe_order": 1,
                "pipe_name": "a",
                "started": at(0),
                "finished": at(5),
            },
            {
                "pipe_job_id": 4,
                "request_id": 50,
                "pipe_order": 1,
                "pipe_name": "b",
                "started": at(0),
                "finished": at(4),
            },
            {
                "pipe_job_id": 2,
                "request_id": 50,
                "pipe_order": 2,
                "pipe_name": "c",
                "started": at(5.1),
                "finished": at(6),
            },
            {
                "pipe_job_id": 3,
                "request_id": 45,
                "pipe_order": 1,
                "pipe_name": "a",
                "started": at(0),
                "finished": at(7),
            },
            {
                "pipe_job_id": 5,
                "request_id": 60,
                "pipe_order": 2,
                "pipe_name": "c",
                "started": pd.NaT,
                "finished": pd.NaT,
            },
        ]
    )
    fig = figures.order_gates_figure(pipe_jobs)
    bars = {t.name: list(t.y) for t in fig.data}
    assert bars == {
        "order 1": ["request 50 · pipe job 1", "request 50 · pipe job 4", "request 45 · pipe job 3"],
        "order 2": ["request 50 · pipe job 2"],
    }
    assert figures.gate_times(pipe_jobs) == [at(5.1)]
    order_two = next(t for t in fig.data if t.name == "order 2")
    assert drawn(order_two.base[0]) >= at(5)


def test_pipeline_graph_marks_fan_out_and_gathering_and_groups_by_order():
    steps = pd.DataFrame(
        [
            {
                "pipe_id": 1,
                "pipe_name": "classify",
                "pipe_version": "1",
                "pipe_order": 1,
                "process_order": 1,
                "process_name": "assigner",
                "process_version": "1.0.0",
                "process_configuration": {"fan_out": 4},
            },
            {
                "pipe_id": 1,
                "pipe_name": "classify",
                "pipe_version": "1",
                "pipe_order": 1,
                "process_order": 2,
                "process_name": "classification",
                "process_version": "1.0.0",
                "process_configuration": {},
            },
            {
                "pipe_id": 1,
                "pipe_name": "classify",
                "pipe_version": "1",
                "pipe_order": 1,
                "process_order": 3,
                "process_name": "merging",
                "process_version": "1.5.2",
                "process_configuration": {"gather": True},
            },
            {
                "pipe_id": 4,
                "pipe_name": "report",
                "pipe_version": "9",
                "pipe_order": 2,
                "process_order": 1,
                "process_name": "summary",
                "process_version": "1.5.2",
                "process_configuration": {},
            },
        ]
    )
    fig = figures.pipeline_graph_figure(steps)
    nodes = {t.name: list(t.text) for t in fig.data if t.mode == "markers+text"}
    assert nodes == {
        "fan-out": ["assigner<br>1.0.0"],
        "step": ["classification<br>1.0.0", "summary<br>1.5.2"],
        "gather": ["merging<br>1.5.2"],
    }
    edges = [t for t in fig.data if t.mode == "lines"]
    assert [len(t.x) for t in edges] == [3, 1]
    assert list(fig.layout.yaxis.ticktext) == ["classify 1<br>order 1", "report 9<br>order 2"]


def test_pipeline_graph_leaves_room_for_every_label():
    steps = pd.DataFrame(
        [
            {
                "pipe_id": 1,
                "pipe_name": "a very long pipeline name indeed",
                "pipe_version": "10.20.30",
                "pipe_order": 1,
                "process_order": n,
                "process_name": name,
                "process_version": "1.0.0",
                "process_configuration": {},
            }
            for n, name in enumerate(["first_process", "wearing_compliance_with_a_long_name", "x"], start=1)
        ]
    )
    fig = figures.pipeline_graph_figure(steps)
    longest_node = figures.label_px(["wearing_compliance_with_a_long_name<br>1.0.0"])
    longest_tick = figures.label_px(fig.layout.yaxis.ticktext)
    assert longest_node == 7 * len("wearing_compliance_with_a_long_name")  # the longer of two lines
    assert longest_tick == 7 * len("a very long pipeline name indeed 10.20.30")
    # the x axis spans 3 columns of half a unit each side: each column gets plot width / 3
    assert list(fig.layout.xaxis.range) == [0.5, 3.5]
    plot_px = fig.layout.width - fig.layout.margin.l - fig.layout.margin.r
    assert plot_px / 3 >= longest_node  # a centred label fits in its column, even at the edges
    assert fig.layout.margin.l >= longest_tick  # the pipelines' names are not cut on the left
    nodes = [t for t in fig.data if t.mode == "markers+text"]
    assert nodes and all(t.cliponaxis is False for t in nodes)  # the top row's labels stand above it
    assert fig.layout.yaxis.range[1] >= 0.9


def test_job_flow_writes_ids_in_white_on_nodes_wide_enough():
    history = fan_out_request()
    history.loc[history["job_id"] == 10, "job_id"] = 1234  # a four-digit id on the uploader's node
    fig = figures.job_flow_figure(history, request_id=1)
    nodes = [t for t in fig.data if t.mode == "markers+text"]
    assert {t.textfont.color for t in nodes} == {"white"}
    assert all(t.marker.size == figures.node_size([1234]) > figures.node_size([12]) for t in nodes)
    assert figures.node_size([1234]) >= 0.75 * figures.NODE_FONT_PX * 4 + 16
    assert {t.marker.color for t in nodes} == {
        figures.STATE_COLOURS["finished"],
        figures.STATE_COLOURS["running"],
    }


def test_job_times_show_each_jobs_wait_then_its_run_and_only_the_requests_jobs():
    fig = figures.job_times_figure(fan_out_request(), request_id=1)
    phases = {t.name: t for t in fig.data}
    assert set(phases) == {"waiting", "running"}
    assert len(phases["waiting"].y) == 10  # every job of request 1 waited; job 11 is request 2's
    assert len(phases["running"].y) == 10  # every one was taken (job 10 still runs)
    first_run = list(phases["running"].y).index("job 1 · assigner")
    assert drawn(phases["running"].base[first_run]) == at(0)  # taken at 0 s ...
    assert phases["running"].x[first_run] == 1000.0  # ... and ran 1 s (plotly keeps ms)


def test_the_gate_moment_marks_order_one_finishing_and_order_two_beginning():
    pipe_jobs = pd.DataFrame(
        [
            {"pipe_job_id": 1, "request_id": 50, "pipe_order": 1, "started": at(0), "finished": at(5)},
            {"pipe_job_id": 4, "request_id": 50, "pipe_order": 1, "started": at(0), "finished": at(7)},
            {"pipe_job_id": 6, "request_id": 50, "pipe_order": 2, "started": at(7.02), "finished": None},
            {"pipe_job_id": 9, "request_id": 51, "pipe_order": 1, "started": at(1), "finished": None},
        ]
    )
    fig = figures.gate_moment_figure(pipe_jobs, request_id=50)
    marks = {t.name: t for t in fig.data if t.mode == "markers"}
    finished = marks["order-1 pipe job finished"]
    begun = marks["order-2 entry job created"]
    assert sorted(drawn(x) for x in finished.x) == [at(5), at(7)]
    assert [drawn(x) for x in begun.x] == [at(7.02)]
    assert max(drawn(x) for x in finished.x) < drawn(begun.x[0])  # the gate opened after the last
    spans = [t for t in fig.data if t.mode == "lines"]
    assert len(spans) == 3  # request 51's pipe job is not drawn


def test_the_dead_rows_figure_shows_each_stage_live_dead_and_pages():
    from pgqueue.lab.bloat import Stats

    stages = {"before": Stats(5, 0, 0, 0, 8192, 1, 0), "after": Stats(5, 40, 40, 2, 81920, 10, 0)}
    fig = figures.dead_rows_figure(stages)
    bars = {trace.name: (list(trace.x), list(trace.y)) for trace in fig.data}
    assert bars == {
        "live": (["before", "after"], [5, 5]),
        "dead": (["before", "after"], [0, 40]),
        "pages": (["before", "after"], [1, 10]),
    }


def test_the_connections_figure_sets_clients_beside_server_connections():
    from pgqueue.lab.scaling import Collapse, Connections

    direct = Connections(workers=6, connections=6, max_connections=100, reserved=3, changes_on="postmaster")
    pooled = Collapse(12, 2, in_server_at_once=2, backends_seen=2, server_connections=2, finished=12)
    fig = figures.connections_figure(direct, pooled)
    bars = {trace.name: list(trace.y) for trace in fig.data}
    assert bars == {"clients": [6, 12], "server connections in use": [6, 2]}
    assert "allows 100 connections" in fig.layout.title.text
