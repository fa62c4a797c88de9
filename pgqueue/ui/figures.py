"""Figures of a lab, drawn from the database: pipelines, worker timeline, job flow, order gates.

Each figure has a pure builder (`*_figure`, from DataFrames, so tests can pin its data) and a
function of the same name without the suffix that reads the lab and calls it.
"""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from pgqueue import queries
from pgqueue.queues import designs, heartbeats, labs

POC = "single-call"  # the design whose figures the lessons draw unless told otherwise
HOVER_JOB = "job %{customdata[0]}, pipe job %{customdata[1]}<extra>%{fullData.name}</extra>"
# dark enough that a job id written in white on a node reads well on every state
STATE_COLOURS = {"waiting": "#616161", "running": "#e65100", "finished": "#2e7d32"}
CHAR_PX = 7.0  # a generous width of one character of plotly's 12 px font, to fit labels


def _q() -> queries.Queries:
    return queries.load("clients/observe.sql")


def steps(poc: str = POC) -> pd.DataFrame:
    """Every pipeline with its steps, by order then pipeline."""
    return labs.frame(poc, _q()["pipeline_steps"])


def history(poc: str = POC) -> pd.DataFrame:
    """Every job of a lab with its request, pipeline, step and state."""
    return labs.frame(poc, _q()[designs.get(poc).history_query])


def counts_by_process(poc: str = POC) -> pd.DataFrame:
    """Jobs waiting, running and finished, per process."""
    return labs.frame(poc, _q()[designs.get(poc).counts_query])


def pipeline_graph(poc: str = POC) -> go.Figure:
    """The pipeline graph of a lab."""
    designs.get(poc).require("pipeline_graph")
    return pipeline_graph_figure(steps(poc))


# --- the pipeline graph ---------------------------------------------------------------------


def pipeline_graph_figure(steps: pd.DataFrame) -> go.Figure:
    """Pipelines as rows (grouped by order), their processes left to right; fan-out and gathering marked."""
    pipes = steps.drop_duplicates("pipe_id").sort_values(["pipe_order", "pipe_id"])
    row = {pipe_id: -n for n, pipe_id in enumerate(pipes["pipe_id"])}
    config = steps["process_configuration"]
    kind = ["fan-out" if c.get("fan_out", 1) > 1 else "gather" if c.get("gather") else "step" for c in config]
    fig = go.Figure()
    for pipe_id, group in steps.sort_values("process_order").groupby("pipe_id"):
        fig.add_scatter(
            x=group["process_order"],
            y=[row[pipe_id]] * len(group),
            mode="lines",
            line={"color": "#90a4ae"},
            hoverinfo="skip",
            showlegend=False,
            name=f"edges {pipe_id}",
        )
    symbols = {"step": "circle", "fan-out": "triangle-right", "gather": "square"}
    frame = steps.assign(
        kind=kind,
        y=[row[p] for p in steps["pipe_id"]],
        node=steps["process_name"] + "<br>" + steps["process_version"],
    )
    for name, group in frame.groupby("kind", sort=False):
        fig.add_scatter(
            x=group["process_order"],
            y=group["y"],
            mode="markers+text",
            name=name,
            marker={"symbol": symbols[name], "size": 16},
            text=group["node"],
            cliponaxis=False,
            textposition="top center",
            customdata=group[["pipe_id", "process_order"]].to_numpy(),
            hovertext=group["process_configuration"].astype(str),
        )
    labels = [
        f"{n} {v}<br>order {o}" for o, n, v in pipes[["pipe_order", "pipe_name", "pipe_version"]].to_numpy()
    ]
    # the top row's labels stand above it: room for them inside the plot
    fig.update_yaxes(
        tickvals=list(row.values()),
        ticktext=labels,
        showgrid=False,
        automargin=True,
        range=[-len(pipes) + 0.5, 0.9],
    )
    # every node's label is centred on it: a column as wide as the longest label, the axis half a
    # column wider on each side, so no label is cut at the plot's edges or runs into its neighbour;
    # names and versions on two lines, and the legend on top, keep the figure narrow enough for a
    # notebook (a wider figure is cut on the right)
    columns = int(steps["process_order"].max())
    column_px = label_px(frame["node"]) + 20
    left = label_px(labels) + 30
    fig.update_xaxes(title="process_order", dtick=1, range=[0.5, columns + 0.5])
    fig.update_layout(
        title="Pipelines, grouped by order",
        height=160 + 70 * len(pipes),
        width=left + RIGHT_PX + column_px * columns,
        margin={"l": left, "r": RIGHT_PX, "t": 100},
        legend={"orientation": "h", "x": 1, "xanchor": "right", "y": 1.0, "yanchor": "bottom"},
    )
    return fig


RIGHT_PX = 30  # the right margin


def label_px(labels) -> int:
    """How wide the longest line of these labels is drawn, in pixels (generously)."""
    lines = [line for label in labels for line in str(label).split("<br>")]
    return int(CHAR_PX * max(map(len, lines), default=1))


# --- the worker timeline --------------------------------------------------------------------


def gate_times(pipe_jobs: pd.DataFrame) -> list[pd.Timestamp]:
    """When each order gate opened: the start of every pipe job of order 2 or more."""
    later = pipe_jobs[(pipe_jobs["pipe_order"] >= 2) & pipe_jobs["started"].notna()]
    return sorted(later["started"].tolist())


def worker_timeline_figure(history: pd.DataFrame, workers: pd.DataFrame, gates: list) -> go.Figure:
    """One row per worker, one bar per job from assigned to finished, coloured by pipeline."""
    done = history[history["job_assign_timestamp"].notna()]
    names = workers.set_index("process_uuid")
    names = names["process_name"] + " " + names["process_version"] + " [" + names.index + "]"
    uuids = done["job_assigned_process_uuid"]
    fig = px.timeline(
        done.assign(
            end=done["job_finish_timestamp"].fillna(pd.Timestamp.now(tz="UTC")),
            worker=uuids.map(names).fillna(uuids),
        ),
        x_start="job_assign_timestamp",
        x_end="end",
        y="worker",
        color="pipeline",
        category_orders={"pipeline": sorted(done["pipeline"].unique())},
        custom_data=["job_id", "pipe_job_id"],
    )
    fig.update_traces(hovertemplate=HOVER_JOB)
    for moment in gates:
        # plotly.js cannot read a zoned timestamp in a shape (the line would vanish): naive UTC,
        # as plotly itself turns the bars' zoned times into
        fig.add_vline(
            x=pd.Timestamp(moment).tz_convert(None).to_pydatetime(), line_dash="dash", line_color="#6a1b9a"
        )
    fig.update_xaxes(title="time")
    fig.update_yaxes(title=None)
    fig.update_layout(
        title="Who ran what, and when (dashed: an order gate opened)",
        height=150 + 28 * max(1, uuids.nunique()),
    )
    return fig


def worker_timeline(poc: str = POC) -> go.Figure:
    """The per-worker timeline of a lab (with the moments order gates opened, where it has them)."""
    design = designs.get(poc).require("worker_timeline")
    gates = gate_times(design.worker().pipe_jobs()) if design.offers("order_gates") else []
    return worker_timeline_figure(history(poc), heartbeats.states(poc), gates)


# --- the job flow of one request ------------------------------------------------------------


def job_flow_figure(history: pd.DataFrame, request_id: int) -> go.Figure:
    """The jobs of one request as nodes, parent -> child edges, state by colour."""
    jobs = history[history["request_id"] == request_id].copy()
    jobs["x"] = jobs.groupby(["pipe_order", "pipe_id", "process_order"]).ngroup()
    jobs["y"] = jobs.groupby("x").cumcount() - (jobs.groupby("x")["job_id"].transform("count") - 1) / 2
    where = jobs.set_index("job_id")[["x", "y"]]
    edge_x, edge_y = [], []
    for job_id, parents in zip(jobs["job_id"], jobs["job_parent_set_elements"], strict=True):
        for parent in parents if isinstance(parents, list) else []:
            if parent in where.index:
                edge_x += [where.loc[parent, "x"], where.loc[job_id, "x"], None]
                edge_y += [where.loc[parent, "y"], where.loc[job_id, "y"], None]
    fig = go.Figure(
        go.Scatter(
            x=edge_x,
            y=edge_y,
            mode="lines",
            name="parent -> child",
            line={"color": "#b0bec5"},
            hoverinfo="skip",
        )
    )
    # a node wide enough for its id in white bold digits
    size = node_size(jobs["job_id"])
    for state, group in jobs.groupby("state"):
        fig.add_scatter(
            x=group["x"],
            y=group["y"],
            mode="markers+text",
            name=state,
            marker={"size": size, "color": STATE_COLOURS[state], "line": {"color": "white", "width": 1}},
            text=group["job_id"].astype(str),
            textposition="middle center",
            textfont={"color": "white", "size": NODE_FONT_PX, "family": "Arial Black, Arial, sans-serif"},
            customdata=group[["job_id", "job_process_name"]].to_numpy(),
            hovertemplate="job %{customdata[0]}: %{customdata[1]}<extra>%{fullData.name}</extra>",
        )
    ticks = list(jobs.drop_duplicates("x").sort_values("x")["job_process_name"])
    fig.update_xaxes(
        tickvals=list(range(len(ticks))), ticktext=ticks, range=[-0.6, len(ticks) - 0.4], automargin=True
    )
    tallest = max(1, int(jobs.groupby("x")["job_id"].count().max())) if len(jobs) else 1
    fig.update_yaxes(visible=False, range=[-tallest / 2, tallest / 2])
    fig.update_layout(
        title=f"Request {request_id}: how its jobs fanned out and in (node: job id, colour: state)",
        height=200 + 70 * tallest,
    )
    return fig


NODE_FONT_PX = 13


def node_size(job_ids) -> int:
    """A marker diameter (px) that holds the longest job id in NODE_FONT_PX bold digits."""
    digits = max((len(str(j)) for j in job_ids), default=1)
    return 16 + int(NODE_FONT_PX * 0.75 * digits)


def job_flow(request_id: int, poc: str = POC) -> go.Figure:
    """The job flow of one request of a lab."""
    designs.get(poc).require("job_flow")
    return job_flow_figure(history(poc), request_id)


def layer_sizes(fig: go.Figure) -> list[int]:
    """How many jobs stand in each column of a job-flow figure, left to right."""
    xs = [x for trace in fig.data if trace.mode == "markers+text" for x in trace.x]
    return [xs.count(x) for x in sorted(set(xs))]


# --- the order gates ------------------------------------------------------------------------


def order_gates_figure(pipe_jobs: pd.DataFrame) -> go.Figure:
    """Per request, each pipe job's span from its first job to its end, coloured by order."""
    spans = pipe_jobs[pipe_jobs["started"].notna()]
    rows = "request " + spans["request_id"].astype(str) + " · pipe job " + spans["pipe_job_id"].astype(str)
    fig = px.timeline(
        spans.assign(
            end=spans["finished"].fillna(pd.Timestamp.now(tz="UTC")),
            row=rows,
            order="order " + spans["pipe_order"].astype(str),
        ),
        x_start="started",
        x_end="end",
        y="row",
        color="order",
        category_orders={"order": [f"order {o}" for o in sorted(spans["pipe_order"].unique())]},
        custom_data=["pipe_job_id", "pipe_name"],
    )
    fig.update_traces(
        hovertemplate="pipe job %{customdata[0]}: %{customdata[1]}<extra>%{fullData.name}</extra>"
    )
    fig.update_xaxes(title="time")
    fig.update_yaxes(autorange="reversed", title=None)
    fig.update_layout(title="Pipe jobs by request: order 2 waits for order 1", height=150 + 30 * len(spans))
    return fig


def order_gates(poc: str = POC) -> go.Figure:
    """The order-gating view of a lab."""
    return order_gates_figure(designs.get(poc).require("order_gates").worker().pipe_jobs())


# --- one request's jobs over time (lesson 06) and its order gate (lesson 07) ---------------


def job_times_figure(history: pd.DataFrame, request_id: int) -> go.Figure:
    """One row per job of a request: waiting (created -> assigned), then running (-> finished)."""
    jobs = history[history["request_id"] == request_id].sort_values("job_id")
    now = pd.Timestamp.now(tz="UTC")
    label = "job " + jobs["job_id"].astype(str) + " · " + jobs["job_process_name"]
    assigned = jobs["job_assign_timestamp"].fillna(now)
    waiting = pd.DataFrame({"job": label, "start": jobs["job_create_timestamp"], "end": assigned})
    running = pd.DataFrame({"job": label, "start": assigned, "end": jobs["job_finish_timestamp"].fillna(now)})
    taken = jobs["job_assign_timestamp"].notna()
    frame = pd.concat([waiting.assign(phase="waiting"), running[taken].assign(phase="running")])
    fig = px.timeline(
        frame,
        x_start="start",
        x_end="end",
        y="job",
        color="phase",
        color_discrete_map={p: STATE_COLOURS[p] for p in ("waiting", "running")},
        category_orders={"job": list(label)},
    )
    fig.update_xaxes(title="time")
    fig.update_yaxes(autorange="reversed", title=None)
    fig.update_layout(
        title=f"Request {request_id}: each job waiting (grey), then running (orange)",
        height=160 + 26 * len(jobs),
    )
    return fig


def job_times(request_id: int, poc: str = POC) -> go.Figure:
    """The jobs of one request of a lab over time."""
    designs.get(poc).require("job_flow")
    return job_times_figure(history(poc), request_id)


def gate_moment_figure(pipe_jobs: pd.DataFrame, request_id: int) -> go.Figure:
    """One request's pipe jobs on a time axis: when each order-1 one finished, when order 2 began."""
    mine = pipe_jobs[pipe_jobs["request_id"] == request_id].copy()
    mine["row"] = "pipe job " + mine["pipe_job_id"].astype(str) + " · order " + mine["pipe_order"].astype(str)
    now = pd.Timestamp.now(tz="UTC")
    fig = go.Figure()
    for pipe in mine[mine["started"].notna()].sort_values("pipe_order", kind="stable").itertuples():
        fig.add_scatter(
            x=[pipe.started, pipe.finished if pd.notna(pipe.finished) else now],
            y=[pipe.row, pipe.row],
            mode="lines",
            line={"width": 10, "color": "#90caf9" if pipe.pipe_order < 2 else "#ce93d8"},
            showlegend=False,
            hoverinfo="skip",
        )
    for order, when, name, symbol, colour in (
        (1, "finished", "order-1 pipe job finished", "x", "#1565c0"),
        (2, "started", "order-2 entry job created", "diamond", "#6a1b9a"),
    ):
        marks = mine[(mine["pipe_order"] == order) & mine[when].notna()]
        fig.add_scatter(
            x=marks[when],
            y=marks["row"],
            mode="markers",
            name=name,
            marker={"symbol": symbol, "size": 14, "color": colour},
        )
    fig.update_xaxes(type="date", title="time")
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(
        title=f"Request {request_id}: the moment its order gate opened", height=180 + 40 * len(mine)
    )
    return fig


def gate_moment(request_id: int, poc: str = POC) -> go.Figure:
    """The order gate of one request of a lab."""
    return gate_moment_figure(designs.get(poc).require("order_gates").worker().pipe_jobs(), request_id)


def dead_rows_figure(stages: dict[str, object]) -> go.Figure:
    """Live and dead row versions of a table, and its pages, at each named stage (bloat.Stats each)."""
    names = list(stages)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("row versions", "pages on disk (8 kB each)"))
    for what, colour, col in (("live", "#2e7d32", 1), ("dead", "#b42318", 1), ("pages", "#616161", 2)):
        values = [getattr(s, what) for s in stages.values()]
        fig.add_bar(x=names, y=values, name=what, marker_color=colour, row=1, col=col)
    fig.update_layout(barmode="group", height=360, margin={"t": 40, "b": 10})
    return fig


def connections_figure(direct: object, pooled: object) -> go.Figure:
    """Clients against the server connections they cost: idle workers connected directly
    (scaling.Connections), and clients through a transaction pool (scaling.Collapse)."""
    ways = [f"{direct.workers} idle workers, direct", f"{pooled.clients} clients, pool of {pooled.pool_size}"]
    fig = go.Figure()
    fig.add_bar(x=ways, y=[direct.workers, pooled.clients], name="clients", marker_color="#616161")
    fig.add_bar(
        x=ways,
        y=[direct.connections, pooled.in_server_at_once],
        name="server connections in use",
        marker_color="#e65100",
    )
    fig.update_layout(
        barmode="group",
        height=340,
        margin={"t": 40, "b": 10},
        title=f"the server allows {direct.max_connections} connections ({direct.reserved} reserved)",
    )
    return fig
