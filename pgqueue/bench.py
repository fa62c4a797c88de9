"""`python -m pgqueue bench`: what a claim costs in each design as the queue grows, beside the floor.

Every design runs in its own lab database on one server (a fresh embedded one, or PGQUEUE_DSN's
with databases of their own), in one run, so the ratios between them are fair. A queue is filled
to each depth in one statement; then a fixed number of claims is timed there, one after another,
each the call that design's worker makes. The floor is the least a queue in PostgreSQL can do
per claim: one `UPDATE ... FOR UPDATE SKIP LOCKED` on a table with one partial index.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from pgqueue import checks, embedded, labs, paths, queries, server
from pgqueue.errors import PgQueueError
from pgqueue.heartbeats import Identity

FULL_DEPTHS = (1_000, 10_000, 100_000, 1_000_000)
QUICK_DEPTHS = (1_000, 10_000)
FULL_SAMPLES = 30
QUICK_SAMPLES = 10
WARM_UP = 3  # claims before the timed ones: the first calls plan their statements
BATCH = 50  # the hardened batch claim's size
PREFIX = "pgqueue_bench_"  # the bench's databases, apart from a learner's labs on a shared server
MAX_DEPTH = 10_000_000


def _q() -> queries.Queries:
    return queries.load("clients/bench.sql")


@dataclass(frozen=True)
class Claimer:
    """One way to claim: a design's worker call (or the floor's statement) and its lab."""

    name: str  # as the table shows it, e.g. "hardened, batch of 50"
    design: str  # the lab it runs in ("floor": a database of its own)
    jobs_per_claim: int
    claim: Callable[[psycopg.Connection, Identity], object]


def _sends(file: str, name: str, **extra) -> Callable[[psycopg.Connection, Identity], object]:
    def claim(conn: psycopg.Connection, who: Identity) -> object:
        params = {"uuid": who.uuid, "server": who.server, "name": who.name, "version": who.version, **extra}
        cur = conn.execute(queries.load(file)[name], params)
        return cur.fetchone() if cur.description else None  # a CALL of a procedure returns nothing

    return claim


CLAIMERS = (
    # notify-listen's worker beats; the heartbeat's trigger assigns the job and NOTIFYs it
    Claimer(
        "notify-listen (heartbeat)", "notify-listen", 1, _sends("clients/heartbeats.sql", "send_heartbeat")
    ),
    Claimer(
        "single-call (find_job)", "single-call", 1, _sends("clients/single_call.sql", "find_job", multi=False)
    ),
    Claimer(
        "hardened (find_job)", "hardened", 1, _sends("clients/hardened.sql", "find_job", multi=False, batch=1)
    ),
    Claimer(
        f"hardened, batch of {BATCH}",
        "hardened",
        BATCH,
        _sends("clients/hardened.sql", "find_job", multi=False, batch=BATCH),
    ),
    Claimer("floor (bare SKIP LOCKED)", "floor", 1, lambda conn, who: _floor_claim(conn, who)),
)


def _floor_claim(conn: psycopg.Connection, who: Identity) -> object:
    return conn.execute(_q()["floor_claim"], {"uuid": who.uuid}).fetchone()


@dataclass(frozen=True)
class ClaimCost:
    """What one claimer's calls cost at one queue depth (milliseconds per call)."""

    claimer: str
    design: str
    depth: int
    calls: int
    jobs_per_call: int
    p50_ms: float
    p90_ms: float
    mean_ms: float


@dataclass
class Report:
    """One bench run: where it ran, what it measured, and how long that took."""

    machine: dict
    server: dict
    quick: bool
    depths: list[int]
    samples: int
    claim_costs: list[ClaimCost] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> str:
        """The whole run as JSON (the lesson reads a saved one)."""
        return json.dumps(asdict(self), indent=1)

    def table(self) -> str:
        """Claim cost per depth for every claimer, and how much a claim at the deepest costs more."""
        depths = self.depths
        head = f"{'claim (ms per call, p50)':<30}" + "".join(f"{_depth(d):>10}" for d in depths)
        lines = [head + f"{'deepest/first':>15}"]
        by = {(c.claimer, c.depth): c for c in self.claim_costs}
        for claimer in dict.fromkeys(c.claimer for c in self.claim_costs):
            costs = [by.get((claimer, d)) for d in depths]
            cells = "".join(f"{c.p50_ms:>10.2f}" if c else f"{'-':>10}" for c in costs)
            first, last = costs[0], costs[-1]
            growth = f"{last.p50_ms / first.p50_ms:>14.1f}x" if first and last and first.p50_ms else ""
            lines.append(f"{claimer:<30}{cells}{growth}")
        return "\n".join(lines)


def _depth(n: int) -> str:
    return (
        f"{n // 1_000_000}M"
        if n >= 1_000_000 and n % 1_000_000 == 0
        else (f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n))
    )


def check_depths(depths: list[int]) -> list[int]:
    """The depths, increasing and each 1..10,000,000, or a one-line error naming the bad value."""
    if not depths:
        raise checks.BadValue("bench needs at least one depth")
    for depth in depths:
        if not 1 <= depth <= MAX_DEPTH:
            raise checks.BadValue(f"a depth is 1 to {MAX_DEPTH:,} waiting jobs, got {depth}")
    if sorted(set(depths)) != list(depths):
        raise checks.BadValue(f"depths must increase, each once (the queue only grows), got {depths}")
    return list(depths)


def check_samples(samples: int) -> int:
    """The number of timed claims per depth (1..1000), or a one-line error."""
    if not 1 <= samples <= 1000:
        raise checks.BadValue(f"samples is 1 to 1000 timed claims per depth, got {samples}")
    return samples


def machine() -> dict:
    """What the numbers were measured on: CPU, cores, memory, system and Python."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        memory = int(Path("/proc/meminfo").read_text().split()[1]) * 1024
    return {
        "cpu": model or platform.processor(),
        "cores": os.cpu_count(),
        "memory_bytes": memory,
        "system": platform.platform(),
        "python": platform.python_version(),
    }


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    """These environment variables inside the block (children inherit them), as they were after."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def own_server() -> Iterator[str]:
    """PGQUEUE_DSN's server, or a fresh embedded one in a private folder, removed afterwards.

    A fresh server keeps the learner's labs and their server's caches out of the numbers. Its
    settings are PostgreSQL's defaults (durable commits), as a queue that must not lose jobs needs.
    The bench's labs have names of their own and no templates (each is built once per run).
    """
    own_labs = {labs.PREFIX_ENV: PREFIX, labs.TEMPLATES_ENV: "0"}
    if os.environ.get(server.DSN_ENV, "").strip():
        with _environ(own_labs):
            yield "PGQUEUE_DSN"
        return
    folder = paths.private_folder(paths.home() / f"bench-{os.getpid()}")
    try:
        with _environ({"PGQUEUE_HOME": str(folder), **own_labs}):
            try:
                yield "a fresh embedded server"
            finally:
                embedded.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class _Queue:
    """One claimer's database, filled with waiting jobs for `bench_noop 1.0.0`."""

    def __init__(self, claimer: Claimer) -> None:
        self.claimer = claimer
        q = _q()
        if claimer.design == "floor":
            self.database = labs.prefix() + "floor"
            with server.connect() as admin:
                kit = queries.load("kit/queries.sql")
                admin.execute(sql.SQL(kit["drop_database"]).format(db=sql.Identifier(self.database)))
                admin.execute(sql.SQL(kit["create_database"]).format(db=sql.Identifier(self.database)))
            with self.connect() as conn:
                conn.execute(q["create_floor"])
            return
        labs.reset(claimer.design, examples=True)
        self.database = labs.database(claimer.design)
        with self.connect() as conn:
            self.pipe_id = conn.execute(q["bench_pipeline"]).fetchone()[0]
            conn.execute(q["bench_step"], {"pipe_id": self.pipe_id})
            if claimer.design != "notify-listen":
                self.pipe_job_id = conn.execute(q["bench_pipe_job"], {"pipe_id": self.pipe_id}).fetchone()[0]

    def connect(self) -> psycopg.Connection:
        return server.connect(self.database, application_name="pgqueue bench")

    def waiting(self, conn: psycopg.Connection) -> int:
        name = "floor_waiting" if self.claimer.design == "floor" else "waiting"
        return conn.execute(_q()[name]).fetchone()[0]

    def fill_to(self, conn: psycopg.Connection, depth: int) -> None:
        """Add waiting jobs until `depth` wait (one statement), then refresh the planner's statistics."""
        q = _q()
        missing = depth - self.waiting(conn)
        if missing > 0:
            if self.claimer.design == "floor":
                conn.execute(q["fill_floor"], {"jobs": missing})
            elif self.claimer.design == "notify-listen":
                conn.execute(q["fill_notify_listen"], {"pipe_id": self.pipe_id, "jobs": missing})
            else:
                conn.execute(q["fill_pipe_job"], {"pipe_id": self.pipe_id, "pipe_job_id": self.pipe_job_id,
                                                  "jobs": missing})  # fmt: skip
        conn.execute(q["floor_analyze" if self.claimer.design == "floor" else "analyze"])


def claim_costs(
    depths: list[int],
    samples: int,
    progress: Callable[[str], None] = lambda line: None,
    claimers: tuple[Claimer, ...] = CLAIMERS,
) -> list[ClaimCost]:
    """Time `samples` claims of every claimer at each depth (after WARM_UP untimed ones).

    Each claim must take exactly its jobs: the queue is counted before and after, and a claim
    that found nothing is an error, not a fast number.
    """
    costs = []
    for claimer in claimers:
        queue = _Queue(claimer)
        who = Identity.new("bench_noop", "1.0.0")
        with queue.connect() as conn:
            for depth in depths:
                # claims take jobs: top up so that every timed claim finds `depth` or more waiting
                queue.fill_to(conn, depth + (WARM_UP + samples) * claimer.jobs_per_claim)
                before = queue.waiting(conn)
                timings = []
                for n in range(WARM_UP + samples):
                    started = time.perf_counter()
                    claimer.claim(conn, who)
                    if n >= WARM_UP:
                        timings.append((time.perf_counter() - started) * 1000)
                taken = before - queue.waiting(conn)
                expected = (WARM_UP + samples) * claimer.jobs_per_claim
                if taken != expected:
                    raise PgQueueError(
                        f"{claimer.name} at depth {depth}: {taken} jobs were taken by {WARM_UP + samples} "
                        f"claims, not {expected}; the numbers would not be claims"
                    )
                cost = ClaimCost(
                    claimer.name,
                    claimer.design,
                    depth,
                    samples,
                    claimer.jobs_per_claim,
                    round(statistics.median(timings), 3),
                    round(_percentile(timings, 0.9), 3),
                    round(statistics.fmean(timings), 3),
                )
                costs.append(cost)
                progress(
                    f"  {claimer.name:<30} {_depth(depth):>6} waiting: {cost.p50_ms:8.2f} ms per call (p50)"
                )
    return costs


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def run(
    *,
    quick: bool = False,
    depths: list[int] | None = None,
    samples: int | None = None,
    progress: Callable[[str], None] = lambda line: None,
) -> Report:
    """A whole bench run on a server of its own; the report (its table, its JSON)."""
    depths = check_depths(list(depths or (QUICK_DEPTHS if quick else FULL_DEPTHS)))
    samples = check_samples(samples or (QUICK_SAMPLES if quick else FULL_SAMPLES))
    started = time.monotonic()
    with own_server() as where:
        report = Report(
            machine=machine(),
            server={"version": server.version(), "where": where},
            quick=quick,
            depths=depths,
            samples=samples,
        )
        progress(f"pgqueue bench on {where} (PostgreSQL {report.server['version']}): claim cost per depth")
        report.claim_costs = claim_costs(depths, samples, progress)
        if where == "PGQUEUE_DSN":
            labs.drop_every(PREFIX)  # a server that outlives the run keeps the learner's labs only
    report.seconds = round(time.monotonic() - started, 1)
    return report
