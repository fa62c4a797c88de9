"""`python -m pgqueue demo`: the seed's full example with real worker processes on a lab, and a report."""

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TypeVar

import pandas as pd
import psycopg

from pgqueue import server
from pgqueue.queues import designs, fleet, heartbeats, labs, pipelines
from pgqueue.queues.single_call import POC
from pgqueue.queues.worker_base import one_line
from pgqueue.values import BadValue
from pgqueue.wait import Backoff

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
# The demo's labs are its own (pgqueue_demo_single_call, ...): a demo never rebuilds the lab a
# learner's open lesson is using. `status --demo` and `kill --demo` look at them.
LAB_PREFIX = "demo_"
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
    attempts: str = ""  # a lab that records attempts (hardened): how many, and how they ended
    attempts_ok: bool = True  # every job succeeded exactly once

    @property
    def all_finished(self) -> bool:
        """Whether every pipe job finished."""
        return bool(self.pipe_jobs["pipe_job_finished"].all())

    @property
    def ok(self) -> bool:
        """Whether the run proved what it should."""
        return self.all_finished and self.gates_ok and self.attempts_ok

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
        lines += [f"attempts: {self.attempts}", ""] if self.attempts else []
        lines += ["workers that got no job:", *[f"  {i}" for i in self.idle]] if self.idle else []
        return "\n".join(lines)


def _count(plan: list[tuple[str, str, int]]) -> int:
    return sum(count for _, _, count in plan)


def _sizes(sets: pd.Series) -> str:
    sizes = sorted({len(s) for s in sets.dropna() if len(s) > 1})
    return ",".join(map(str, sizes)) or "-"


def build_report(started: float, poc: str = POC) -> Report:
    """Read the lab after a run and say what it proves."""
    module = designs.get(poc).worker()
    pipes = module.pipe_jobs()
    jobs = module.jobs()
    # a design that records every attempt (hardened) is judged by them; single call has claims
    tried = module.attempts() if hasattr(module, "attempts") else None
    gathered = _gathered_sets(jobs, tried) if tried is not None else _claimed_sets(module.claims())
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
                "fan-in": _sizes(gathered.loc[gathered["pipe_job_id"] == pj["pipe_job_id"], "job_ids"]),
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
    states = heartbeats.states(poc)
    # a worker that ran a job: in hardened, one with an attempt (a rescue clears the job's holder)
    busy_uuids = set(jobs["job_assigned_process_uuid"].dropna() if tried is None else tried["process_uuid"])
    idle = [
        f"{r.process_name} {r.process_version} [{r.process_uuid}]: no pipeline asks for this version"
        if not _used(poc, r.process_name, r.process_version)
        else f"{r.process_name} {r.process_version} [{r.process_uuid}]: its peers took every job"
        for r in states.itertuples()
        if r.process_uuid not in busy_uuids
    ]
    report = Report(table, gates, gates_ok, competing, idle, time.time() - started)
    if tried is None:
        return report
    line, once = _attempts(jobs, tried)
    return replace(report, attempts=line, attempts_ok=once)


def _claimed_sets(claims: pd.DataFrame) -> pd.DataFrame:
    """The jobs each find_job call handed out together, by pipe job (single call's claim table)."""
    return claims.rename(columns={"claimed_job_ids": "job_ids"})[["pipe_job_id", "job_ids"]]


def _gathered_sets(jobs: pd.DataFrame, tried: pd.DataFrame) -> pd.DataFrame:
    """The parallel sets gathering processes took, by pipe job, split by the worker that finished them.

    The hardened lab keeps no claim table: a set's jobs name their set (job_creater_set_elements),
    and their succeeded attempts say who ran them; a set two workers shared would show in pieces.
    """
    gathering = jobs[jobs["job_process_config"].map(lambda c: bool((c or {}).get("gather")))]
    succeeded = tried[tried["outcome"] == "succeeded"][["job_id", "process_uuid"]]
    done = gathering.merge(succeeded, on="job_id")
    if done.empty:
        return pd.DataFrame({"pipe_job_id": [], "job_ids": []})
    done = done.assign(
        set_key=done["job_creater_set_elements"].map(lambda s: tuple(s) if s is not None else ())
    )
    grouped = done.groupby(["pipe_job_id", "set_key", "process_uuid"])["job_id"].agg(list)
    return grouped.reset_index().rename(columns={"job_id": "job_ids"})[["pipe_job_id", "job_ids"]]


def _attempts(jobs: pd.DataFrame, tried: pd.DataFrame) -> tuple[str, bool]:
    """One line on the attempts at the jobs; True when every job succeeded exactly once."""
    outcomes = tried["outcome"].fillna("running").value_counts()
    succeeded = tried[tried["outcome"] == "succeeded"].groupby("job_id").size()
    once = succeeded.reindex(jobs["job_id"], fill_value=0)
    others = ", ".join(f"{outcomes.get(kind, 0)} {kind}" for kind in ("failed", "rescued", "running"))
    line = f"{len(tried)} attempts at {len(jobs)} jobs ({others})"
    if (once == 1).all():
        return f"{line}: every job succeeded exactly once", True
    twice, never = (once > 1).sum(), (once == 0).sum()
    return f"{line}: {twice} job(s) succeeded more than once, {never} never", False


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


def _used(poc: str, name: str, version: str) -> bool:
    with labs.connect(poc) as conn:
        return pipelines.serves_a_step(conn, name, version)


def _progress(workers: fleet.Fleet, c: dict) -> str:
    alive = len(workers.members(alive=True))
    dead = f", {c['dead']} dead-lettered" if "dead" in c else ""
    return (
        f"pipe jobs {c['pipe_jobs_finished']}/{c['pipe_jobs']} finished | jobs: {c['waiting']} "
        f"waiting, {c['running']} running, {c['finished']} finished{dead} | workers alive {alive}"
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
GATE_OWN = "the design's own: finishers of one request take turns"


def check(poc: str, original_gate: bool = False) -> designs.Design:
    """The design the demo runs on, or a BadValue saying why it cannot (before any lab is touched)."""
    design = designs.get(poc)
    if design.submits != "pipe job":
        able = ", ".join(d.name for d in designs.REGISTRY.values() if d.submits == "pipe job")
        raise BadValue(
            f"the demo runs pipelines chained by order, and lab {poc!r} has none (it queues single jobs); "
            f"choose --poc {able.replace(', ', ' or --poc ')}"
        )
    if original_gate and not _fixable(poc):
        raise BadValue(f"--original-gate: lab {poc!r} has no original gate to keep, only its own safe one")
    return design


def _fixable(poc: str) -> bool:
    """Whether the lab's steps ship fixes apart (then it can run with the original's defects)."""
    return any(step.fix_path for step in labs.steps(poc))


def run(
    work: tuple[float, float] = (0.0, 0.3),
    poll: float = 0.2,
    timeout: float = 60.0,
    out=sys.stdout,
    original_gate: bool = False,
    poc: str = POC,
) -> Report:
    """Build a fresh demo lab of `poc` with the examples, run every example process as an OS process, report.

    A single-call lab gets lesson 07's fix of the order gate unless `original_gate`: with fourteen
    workers, two order-1 pipe jobs of request 50 finishing within the same few milliseconds would
    otherwise stall it now and then, and a demo should not fail by luck. The hardened lab has
    only its own gate, and its report adds the attempts at every job.
    """
    module = check(poc, original_gate).worker()
    with labs.prefixed(LAB_PREFIX):
        print(
            f"the demo's own lab: database {labs.database(poc)} (the lessons' labs are left as they are); "
            f"watch it with: python -m pgqueue status --demo --poc {poc}",
            file=out,
            flush=True,
        )
        started = time.time()
        labs.reset(poc, examples=True, fixes=not original_gate)
        with fleet.Fleet(poc) as workers:
            opts = module.Options(poll=poll, work=work)
            workers.launch(LAUNCHER + README_FLOW, mode="process", worker_options=opts)
            print(
                f"started {len(workers.members())} worker processes "
                f"({_count(LAUNCHER)} from the original launcher, {_count(README_FLOW)} for the README flow)",
                file=out,
                flush=True,
            )
            _watch(workers, module.job_counts, started + timeout, out)
            report = _read(lambda: build_report(started, poc), time.time() + OUTAGE_GRACE, out)
            gate = GATE_OWN if not _fixable(poc) else GATE_ORIGINAL if original_gate else GATE_FIXED
            workers.stop(timeout=poll + work[1] + 5)
    return replace(report, gate=gate)


def _watch(workers: fleet.Fleet, job_counts: Callable[[], dict], deadline: float, out) -> None:
    """Print the progress line until every pipe job finished, nothing can move any more, or `deadline`."""
    live, shown = out.isatty(), ""
    while True:
        counts = _read(job_counts, deadline + OUTAGE_GRACE, out)
        line = _progress(workers, counts)
        if line != shown:
            print(("\r" if live else "") + line, end="" if live else "\n", file=out, flush=True)
            shown = line
        done = counts["pipe_jobs_finished"] == counts["pipe_jobs"]
        # no job waiting or running, yet pipe jobs unfinished: nothing can move any more (a
        # stalled gate, a dead-lettered job); the counts come from one snapshot, and a job is
        # finished in the same transaction that makes its successors, so this is never a
        # moment between two steps (a job backing off before a retry counts as waiting)
        stuck = not done and counts["waiting"] == 0 and counts["running"] == 0
        if done or stuck or time.time() >= deadline:
            break
        time.sleep(PROGRESS_EVERY)  # the refresh rate of the progress line
    if live:
        print(file=out)
