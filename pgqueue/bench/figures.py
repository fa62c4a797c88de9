"""Figures and plans of a `python -m pgqueue bench` run: claim cost, throughput, wake-up, and why."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from pgqueue.bench.inputs import FLOOR
from pgqueue.bench.report import ClaimCost, Report
from pgqueue.errors import PgQueueError

DESIGNS = ("notify-listen", "single-call", "hardened")  # the kit's own; "floor" and the peers are the others
HEIGHT = 460  # no width: a figure fills the notebook's width, the legend on its right


def _dash(design: str) -> str:
    """Solid for the kit's designs, dotted for the floor, dashed for a peer: the family shows at a glance."""
    return "solid" if design in DESIGNS else "dot" if design == "floor" else "dash"


# --- claim cost -------------------------------------------------------------------------------


def cost(report: Report, claimer: str, depth: int) -> ClaimCost:
    """One claimer's measurement at one depth, or an error naming what the run holds."""
    found = next((c for c in report.claim_costs if c.claimer == claimer and c.depth == depth), None)
    if found is None:
        claimers = ", ".join(dict.fromkeys(c.claimer for c in report.claim_costs)) or "none"
        raise PgQueueError(
            f"this run has no claim cost for {claimer!r} at depth {depth}; "
            f"its claimers: {claimers}; its depths: {report.depths}"
        )
    return found


def growth(report: Report, claimer: str) -> float:
    """How many times more a claim costs at the run's deepest queue than at its first (p50)."""
    first, last = cost(report, claimer, report.depths[0]), cost(report, claimer, report.depths[-1])
    return last.p50_ms / first.p50_ms


def claim_cost_figure(report: Report) -> go.Figure:
    """Claim cost (p50 ms per call) against queue depth, log-log, one line per claimer."""
    fig = go.Figure()
    for claimer in dict.fromkeys(c.claimer for c in report.claim_costs):
        costs = sorted((c for c in report.claim_costs if c.claimer == claimer), key=lambda c: c.depth)
        fig.add_trace(
            go.Scatter(
                x=[c.depth for c in costs],
                y=[c.p50_ms for c in costs],
                mode="lines+markers",
                name=claimer,
                line={"dash": _dash(costs[0].design)},
                customdata=[[c.p90_ms, c.jobs_per_call, c.p50_ms / c.jobs_per_call] for c in costs],
                hovertemplate=(
                    "%{x:,} waiting: %{y:.2f} ms per call (p50), %{customdata[0]:.2f} ms (p90)<br>"
                    "%{customdata[1]} job(s) per call: %{customdata[2]:.3f} ms per job"
                    "<extra>%{fullData.name}</extra>"
                ),
            )
        )
    fig.update_xaxes(type="log", title="jobs waiting in the queue (log)", tickvals=report.depths)
    fig.update_yaxes(type="log", title="ms per claim call, p50 (log)")
    fig.update_layout(title="What one claim costs as the queue grows", height=HEIGHT)
    return fig


# --- plans ------------------------------------------------------------------------------------

_NODE = re.compile(r"^(?P<indent>\s*)(?:->\s+)?(?P<name>\S.*?)\s+\(cost=")
_ACTUAL = re.compile(r"\(actual [^)]*?rows=(?P<rows>[\d.]+) loops=(?P<loops>\d+)\)")
_SCAN = re.compile(
    r"(?:Seq Scan|Index Scan using \S+|Index Only Scan using \S+|Bitmap Heap Scan) on (?P<table>\w+)"
)
_BUFFERS = re.compile(r"Buffers: shared(?: hit=(?P<hit>\d+))?(?: read=(?P<read>\d+))?")
_REMOVED = re.compile(r"Rows Removed by (?:Filter|Index Recheck): (?P<n>\d+)")


@dataclass
class _Node:
    name: str
    indent: int
    ancestors: list[str]
    rows: float = 0.0
    removed: int = 0
    buffers: int = 0  # shared pages hit or read by this node and those under it
    details: list[str] = field(default_factory=list)


def _blocks(plan: str) -> list[str]:
    """The plan of each statement, as auto_explain wrote it: `duration: ... plan:`, the query, the tree."""
    return [block.strip() for block in re.split(r"(?m)^(?=duration: )", plan) if block.strip()]


def _nodes(block: str) -> list[_Node]:
    """The plan tree's nodes, each with the nodes above it, its actual rows, and its pages."""
    nodes: list[_Node] = []
    stack: list[_Node] = []
    for line in block.splitlines():
        match = _NODE.match(line)
        if match:  # a node (a "never executed" one has no actual rows: it read nothing)
            indent = len(match["indent"])
            while stack and stack[-1].indent >= indent:
                stack.pop()
            actual = _ACTUAL.search(line)
            node = _Node(match["name"], indent, [n.name for n in stack])
            if actual:
                node.rows = float(actual["rows"]) * int(actual["loops"])
            nodes.append(node)
            stack.append(node)
        elif stack:
            detail = line.strip()
            stack[-1].details.append(detail)
            if (removed := _REMOVED.match(detail)) and not stack[-1].removed:
                stack[-1].removed = int(removed["n"])
            if (pages := _BUFFERS.match(detail)) and not stack[-1].buffers:
                stack[-1].buffers = int(pages["hit"] or 0) + int(pages["read"] or 0)
    return nodes


def _scans(block: str, table: str) -> list[_Node]:
    """The scans of `table` that choose rows: under a Limit (not the UPDATE that then finds them by id)."""
    found = [n for n in _nodes(block) if (scan := _SCAN.search(n.name)) and scan["table"] == table]
    return [n for n in found if "Limit" in n.ancestors]


def statements(plan: str) -> list[str]:
    """The statements one claim ran, in the order they ended (calls inside a call first), one line each."""
    ran = []
    for block in _blocks(plan):
        text = block.split("Query Text:", 1)[-1].splitlines()
        sql = [line.strip() for line in text if line.strip() and not line.strip().startswith("--")]
        ran.append(" ".join(sql[0].split()) if sql else "")
    return ran


def pick(plan: str, reading: str = "job_queue") -> str:
    """The plans of the statements that pick the next jobs: a scan of `reading` under a `Limit`.

    A claim runs many statements (the heartbeat, the rescue, the lease...); auto_explain logged
    each. The pick is the one that chooses which waiting rows to take, so the one whose cost can
    grow with the queue.
    """
    found = [b for b in _blocks(plan) if _scans(b, reading)]
    if not found:
        if not plan.strip():
            raise PgQueueError("this claim has no plan saved (the run could not LOAD auto_explain)")
        raise PgQueueError(f"no statement of this plan scans {reading} under a Limit")
    return "\n\n".join(found)


def plan_of(report: Report, claimer: str, depth: int, reading: str | None = None) -> str:
    """The pick of one claimer's claim at one depth, from the run's saved plans (EXPLAIN ANALYZE, BUFFERS).

    `reading` defaults to the claimer's queue table: floor_queue for the floor, job_queue for the rest.
    """
    measured = cost(report, claimer, depth)
    return pick(measured.plan, reading or ("floor_queue" if measured.design == "floor" else "job_queue"))


def rows_read(plan: str, table: str = "job_queue") -> int:
    """Rows the pick's scans of `table` looked at: those they returned and those their filter removed."""
    return round(sum(n.rows + n.removed for b in _blocks(plan) for n in _scans(b, table)))


def pages_read(plan: str, table: str = "job_queue") -> int:
    """Pages (8 kB buffers, from the cache or the disk) the pick's scans of `table` touched."""
    return sum(n.buffers for b in _blocks(plan) for n in _scans(b, table))


def call_pages(plan: str) -> int:
    """Pages the whole call read (its own statement's buffers, which include everything inside it)."""
    whole = _blocks(plan)[-1]  # the statement that made the call ends last, so it is logged last
    found = _BUFFERS.search(whole)
    return int(found["hit"] or 0) + int(found["read"] or 0) if found else 0


def picks(report: Report) -> pd.DataFrame:
    """Every claimer's pick: how it scans its queue, and the rows and pages it read at each depth."""
    rows = []
    for c in report.claim_costs:
        table = "floor_queue" if c.design == "floor" else "job_queue"
        picked = pick(c.plan, table)
        scan = next(n.name for b in _blocks(picked) for n in _scans(b, table))
        rows.append(
            {
                "claimer": c.claimer,
                "scan": scan.split(" on ")[0],  # "Seq Scan", "Index Scan using job_queue_waiting"
                "depth": c.depth,
                "rows read": rows_read(picked, table),
                "pages read": pages_read(picked, table),
            }
        )
    frame = pd.DataFrame(rows)
    # one row per claimer, naming each way it scanned: at 1M the planner may scan in parallel
    frame["scan"] = frame.groupby("claimer")["scan"].transform(lambda kinds: " / ".join(dict.fromkeys(kinds)))
    order = list(dict.fromkeys(frame["claimer"]))  # the run's order, not the alphabet's
    wide = frame.pivot_table(index=["claimer", "scan"], columns="depth", values=["rows read", "pages read"])
    return wide[["rows read", "pages read"]].reindex(order, level="claimer").astype(int)


# --- throughput -------------------------------------------------------------------------------


def throughput_figure(report: Report) -> go.Figure:
    """Jobs per second against worker processes, one line per design, the floor and each peer."""
    fig = go.Figure()
    for runner in dict.fromkeys(t.runner for t in report.throughput):
        points = sorted((t for t in report.throughput if t.runner == runner), key=lambda t: t.workers)
        ratios = []
        for t in points:
            floor = report.jobs_per_s(FLOOR, t.workers)
            ratios.append(f"{t.jobs_per_s / floor:.2f}x the floor" if floor else "no floor measured")
        fig.add_trace(
            go.Scatter(
                x=[t.workers for t in points],
                y=[t.jobs_per_s for t in points],
                mode="lines+markers",
                name=runner,
                line={"dash": _dash(points[0].design)},
                customdata=[
                    [r, t.jobs, "drained" if t.drained else "window closed"]
                    for r, t in zip(ratios, points, strict=True)
                ],
                hovertemplate=(
                    "%{x} worker process(es): %{y:,.0f} jobs/s, %{customdata[0]}<br>"
                    "%{customdata[1]:,} jobs finished, %{customdata[2]}<extra>%{fullData.name}</extra>"
                ),
            )
        )
    fig.update_xaxes(title="worker processes", tickvals=report.workers, type="log")
    fig.update_yaxes(type="log", title="jobs finished per second (log)")
    fig.update_layout(
        title=f"Throughput on {report.jobs:,} no-op jobs (at most {report.window:g} s per point)",
        height=HEIGHT,
    )
    return fig


# --- wake-up ----------------------------------------------------------------------------------


def wake_up_figure(report: Report) -> go.Figure:
    """How long each job waited for an idle worker, per design: the share of jobs held within x ms."""
    frame = pd.DataFrame(
        [{"design": w.design, "ms": ms} for w in report.wake_ups for ms in w.all_ms], columns=["design", "ms"]
    )
    fig = px.ecdf(frame, x="ms", color="design", log_x=True, markers=True, ecdfnorm="percent")
    fig.update_traces(
        hovertemplate="%{y:.0f}% of jobs held within %{x:.1f} ms<extra>%{fullData.name}</extra>"
    )
    fig.update_xaxes(title="ms from the job's commit to an idle worker holding it (log)")
    fig.update_yaxes(title="jobs held within that time (%)")
    fig.update_layout(title="Wake-up: from commit to held, one idle worker", height=HEIGHT)
    return fig
