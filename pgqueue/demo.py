"""`python -m pgqueue demo`: the seed's full single-call example with real worker processes, and a report."""

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TypeVar

import pandas as pd
import psycopg

from pgqueue import fleet, heartbeats, labs, pipelines, server, single_call
from pgqueue.single_call import POC, Options
from pgqueue.wait import Backoff
from pgqueue.worker_base import one_line

# The original launcher: 12 OS processes. classification 9.1.0 matches no pipeline and idles.
LAUNCHER = [
    ("merging_results", "1.5.2", 2),
    ("classification", "1.0.0", 2),
    ("classification", "9.1.0", 1),
    ("assigner", "1.0.0", 1),
    ("uploader", "1.0.0", 1),
    ("first_process", "1.9.2", 1),
    ("second_process", "2.2.0", 1),
    ("third_process", "5.3.0", 1),
    ("sumarizing_results", "1.5.2", 1),
    ("creating_report", "1.0.0", 1),
]
# The processes the seed README's flow adds (assigner and classification are shared).
README_FLOW = [("wearing_compliance", "1.5.2", 1), ("movemonitor", "1.0.0", 1)]
PROGRESS_EVERY = 0.5
OUTAGE_GRACE = 30.0  # seconds past the deadline the demo keeps trying to read the lab
T = TypeVar("T")


@dataclass(frozen=True)
class Report:
    """What the run showed."""

    pipe_jobs: pd.DataFrame
    gates: list[str]  # one line per order gate, "ok" or "VIOLATED"
    gates_ok: bool
    competing: str
    idle: list[str]
    seconds: float
    gate: str = ""  # which order gate the lab ran: the original's, or with lesson 07's fix

    @property
    def all_finished(self) -> bool:
        """Whether every pipe job finished."""
        return bool(self.pipe_jobs["pipe_job_finished"].all())

    @property
    def ok(self) -> bool:
        """Whether the run proved what it should."""
        return self.all_finished and self.gates_ok

    def text(self) -> str:
        """The report as printed."""
        table = self.pipe_jobs.drop(columns=["pipe_job_finished"]).to_string(index=False)
        lines = [
            f"pipe jobs ({self.seconds:.1f} s; times in seconds from the start):",
            table,
            "",
            f"order gates ({self.gate}):" if self.gate else "order gates:",
            *[f"  {g}" for g in self.gates],
            "",
            f"competing for the same process: {self.competing}",
            "",
        ]
        lines += ["workers that got no job:", *[f"  {i}" for i in self.idle]] if self.idle else []
        return "\n".join(lines)


def _count(plan: list[tuple[str, str, int]]) -> int:
    return sum(count for _, _, count in plan)


def _sizes(sets: pd.Series) -> str:
    sizes = sorted({len(s) for s in sets.dropna() if len(s) > 1})
    return ",".join(map(str, sizes)) or "-"


def build_report(started: float) -> Report:
    """Read the lab after a run and say what it proves."""
    pipes = single_call.pipe_jobs()
    jobs = single_call.jobs()
    claims = single_call.claims()
    t0 = pd.Timestamp(started, unit="s", tz="UTC")
    rows = []
    for _, pj in pipes.iterrows():
        mine = jobs[jobs["pipe_job_id"] == pj["pipe_job_id"]]
        rows.append(
            {
                "pipe job": pj["pipe_job_id"],
                "request": pj["request_id"],
                "pipeline": f"{pj['pipe_name']} {pj['pipe_version']}",
                "order": pj["pipe_order"],
                "priority": pj["pipe_job_priority"],
                "start": round((pj["started"] - t0).total_seconds(), 2) if pd.notna(pj["started"]) else None,
                "end": round((pj["finished"] - t0).total_seconds(), 2) if pd.notna(pj["finished"]) else None,
                "jobs": pj["jobs"],
                "fan-out": _sizes(mine["job_set_elements"]),
                "fan-in": _sizes(claims.loc[claims["pipe_job_id"] == pj["pipe_job_id"], "claimed_job_ids"]),
                "pipe_job_finished": pj["pipe_job_finished"],
            }
        )
    table = pd.DataFrame(rows)
    gates, gates_ok = [], True
    for request, group in pipes.groupby("request_id"):
        for order in sorted(group["pipe_order"].unique()):
            if order < 2:
                continue
            line, held = _gate(request, order, group)
            gates.append(line)
            gates_ok &= held
    entry = jobs[jobs["job_parent_set_elements"].isna()].sort_values("job_assign_timestamp")
    contested = entry.groupby(["job_process_name", "job_process_version"]).filter(lambda g: len(g) > 1)
    competing = (
        "; ".join(
            f"{name} {version} took pipe jobs "
            + ", ".join(f"{r.pipe_job_id} (priority {r.job_priority})" for r in g.itertuples())
            for (name, version), g in contested.groupby(["job_process_name", "job_process_version"])
        )
        or "none"
    )
    states = heartbeats.states(POC)
    busy_uuids = set(jobs["job_assigned_process_uuid"].dropna())
    idle = [
        f"{r.process_name} {r.process_version} [{r.process_uuid}]: no pipeline asks for this version"
        if not _used(r.process_name, r.process_version)
        else f"{r.process_name} {r.process_version} [{r.process_uuid}]: its peers took every job"
        for r in states.itertuples()
        if r.process_uuid not in busy_uuids
    ]
    return Report(table, gates, gates_ok, competing, idle, time.time() - started)


def _gate(request: int, order: int, group: pd.DataFrame) -> tuple[str, bool]:
    """One line on a request's gate into `order`; False only if the gate let it start too early."""
    before, after = group[group["pipe_order"] == order - 1], group[group["pipe_order"] == order]
    head = f"request {request}: order {order} (pipe job {', '.join(map(str, after['pipe_job_id']))})"
    earlier = f"order-{order - 1} pipe jobs {', '.join(map(str, before['pipe_job_id']))}"
    last_end, first_start = before["finished"].max(), after["started"].min()
    if before.empty:
        return f"{head} waits for order-{order - 1} work that this request does not have", True
    if pd.notna(first_start):
        if pd.notna(last_end) and first_start >= last_end:
            gap = (first_start - last_end).total_seconds()
            return f"{head} started {gap:.3f} s after its last {earlier} finished", True
        return f"{head} VIOLATED: started before its {earlier} had all finished", False
    if before["pipe_job_finished"].all():
        spread = (last_end - before["finished"].min()).total_seconds() * 1000
        return (
            f"{head} STALLED: its {earlier} finished {spread:.0f} ms apart and neither opened the gate "
            "(each saw the other unfinished: the race of lesson 07)"
        ), True
    return f"{head} waits for its {earlier}", True


def _used(name: str, version: str) -> bool:
    with labs.connect(POC) as conn:
        return pipelines.serves_a_step(conn, name, version)


def _progress(workers: fleet.Fleet, c: dict) -> str:
    alive = len(workers.members(alive=True))
    return (
        f"pipe jobs {c['pipe_jobs_finished']}/{c['pipe_jobs']} finished | jobs: {c['waiting']} "
        f"waiting, {c['running']} running, {c['finished']} finished | workers alive {alive}"
    )


def _read(query: Callable[[], T], give_up_at: float, out) -> T:
    """`query()`, retried with backoff while the database does not answer, until `give_up_at`.

    A moment without the database (a restart, a name lookup that times out in a container
    network) should not end a demo whose workers ride it out; one line says it happened.
    """
    backoff, said = Backoff(0.25, 4.0), False
    while True:
        try:
            return query()
        except (server.Unreachable, psycopg.OperationalError) as exc:
            if time.time() >= give_up_at:
                raise
            if not said:
                print(
                    f"demo: no answer from the database ({one_line(exc)}); trying again", file=out, flush=True
                )
                said = True
            time.sleep(backoff.next())


GATE_FIXED = "the original's, with lesson 07's fix: finishers of one request take turns"
GATE_ORIGINAL = "the original's, unfixed: two pipe jobs finishing together can stall a request"


def run(
    work: tuple[float, float] = (0.0, 0.3),
    poll: float = 0.2,
    timeout: float = 60.0,
    out=sys.stdout,
    original_gate: bool = False,
) -> Report:
    """Build a fresh lab with the examples, run every example process as an OS process, report.

    The lab gets lesson 07's fix of the order gate unless `original_gate`: with fourteen workers,
    two order-1 pipe jobs of request 50 finishing within the same few milliseconds would
    otherwise stall it now and then, and a demo should not fail by luck.
    """
    started = time.time()
    labs.reset(POC, examples=True, fixes=not original_gate)
    opts = Options(poll=poll, work=work)
    live = out.isatty()
    with fleet.Fleet(POC) as workers:
        workers.launch(LAUNCHER + README_FLOW, mode="process", worker_options=opts)
        print(
            f"started {len(workers.members())} worker processes "
            f"({_count(LAUNCHER)} from the original launcher, {_count(README_FLOW)} for the README flow)",
            file=out,
            flush=True,
        )
        deadline, shown = started + timeout, ""
        while True:
            counts = _read(single_call.job_counts, deadline + OUTAGE_GRACE, out)
            line = _progress(workers, counts)
            if line != shown:
                print(("\r" if live else "") + line, end="" if live else "\n", file=out, flush=True)
                shown = line
            done = counts["pipe_jobs_finished"] == counts["pipe_jobs"]
            # no job waiting or running, yet pipe jobs unfinished: nothing can move any more (a
            # stalled gate); the counts come from one snapshot, and a job is finished in the same
            # transaction that makes its successors, so this is never a moment between two steps
            stuck = not done and counts["waiting"] == 0 and counts["running"] == 0
            if done or stuck or time.time() >= deadline:
                break
            time.sleep(PROGRESS_EVERY)  # the refresh rate of the progress line
        if live:
            print(file=out)
        report = _read(lambda: build_report(started), time.time() + OUTAGE_GRACE, out)
        report = replace(report, gate=GATE_ORIGINAL if original_gate else GATE_FIXED)
        workers.stop(timeout=poll + work[1] + 5)
    return report
