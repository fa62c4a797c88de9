"""`python -m pgqueue bench`: what each design costs and how that grows, beside the floor and the peers.

Every design runs in its own lab database on one server (a fresh embedded one, or PGQUEUE_DSN's
with databases of their own), in one run, so the ratios between them are fair. Four scenarios:

* claim cost: a queue is filled to each depth in one statement, then a fixed number of claims is
  timed there, one after another, each the call that design's worker makes;
* throughput: 1, 2, 4, 8 worker processes (pgqueue.bench.worker) released together on a fresh
  queue of no-op jobs, until it is empty or a fixed window has passed;
* wake-up: one idle worker, and jobs committed one at a time: how long each waited to be held;
* the floor: the least a queue in PostgreSQL can do per job, one `UPDATE ... FOR UPDATE SKIP
  LOCKED` on a table with one partial index, and pgbench's single-row UPDATE on the same server.

Peers (pgqueuer, procrastinate) run in the throughput scenario when installed.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import random
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from pgqueue import children, paths, queries, server, values
from pgqueue.bench import peers
from pgqueue.errors import PgQueueError
from pgqueue.queues import labs, notify_listen
from pgqueue.queues.heartbeats import Identity
from pgqueue.server import embedded, wheel

FULL_DEPTHS = (1_000, 10_000, 100_000, 1_000_000)
QUICK_DEPTHS = (1_000, 10_000)
FULL_SAMPLES = 60
QUICK_SAMPLES = 10
WARM_UP = 3  # claims before the timed ones: the first calls plan their statements
BATCH = 50  # the hardened batch claim's size
PREFIX = "pgqueue_bench_"  # the bench's databases, apart from a learner's labs on a shared server
MAX_DEPTH = 10_000_000
SCENARIOS = ("claims", "throughput", "wake-up", "pgbench")


def _q() -> queries.Queries:
    return queries.load("clients/bench.sql")


@dataclass(frozen=True)
class Claimer:
    """One way to claim: a design's worker call (or the floor's statement) and its lab."""

    name: str  # as the table shows it, e.g. "hardened, batch of 50"
    design: str  # the lab it runs in ("floor": a database of its own)
    jobs_per_claim: int
    claim: Callable[[psycopg.Connection, Identity], object]
    # what the worker does with a claim's jobs when they are done, untimed before the next claim;
    # None where the jobs a worker holds do not change what the next claim costs
    finish: Callable[[psycopg.Connection, Identity, object], None] | None = None


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
    # every hardened find_job looks through the leased jobs for lost workers: a worker finishes
    # what it claimed, so the leases stay as few as in a running queue, not one more per claim
    Claimer(
        "hardened (find_job)",
        "hardened",
        1,
        _sends("clients/hardened.sql", "find_job", multi=False, batch=1),
        lambda conn, who, answer: _hardened_finish(conn, who, answer),
    ),
    Claimer(
        f"hardened, batch of {BATCH}",
        "hardened",
        BATCH,
        _sends("clients/hardened.sql", "find_job", multi=False, batch=BATCH),
        lambda conn, who, answer: _hardened_finish(conn, who, answer),
    ),
    Claimer("floor (bare SKIP LOCKED)", "floor", 1, lambda conn, who: _floor_claim(conn, who)),
)


def _hardened_finish(conn: psycopg.Connection, who: Identity, answer: object) -> None:
    ids = [job["job_id"] for job in json.loads(answer[0])]
    conn.execute(queries.load("clients/hardened.sql")["finish_pipes"], {"uuid": who.uuid, "job_ids": ids})


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
    plan: str = ""  # EXPLAIN (ANALYZE, BUFFERS) of every statement one more claim ran, by auto_explain


@dataclass
class Report:
    """One bench run: where it ran, what it measured, and how long that took."""

    machine: dict
    server: dict
    quick: bool
    depths: list[int]
    samples: int
    workers: list[int] = field(default_factory=list)
    jobs: int = 0  # no-op jobs queued for each throughput point
    window: float = 0.0  # the most seconds a throughput point may last
    claim_costs: list[ClaimCost] = field(default_factory=list)
    throughput: list[Throughput] = field(default_factory=list)
    wake_ups: list[WakeUp] = field(default_factory=list)
    pgbench: list[Pgbench] = field(default_factory=list)
    peers_missing: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> str:
        """The whole run as JSON, with the goals checked (the lesson reads a saved one)."""
        return json.dumps({**asdict(self), "goals": [asdict(goal) for goal in self.goals()]}, indent=1)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Report:
        """A run saved with --json (its goals are checked again from its numbers)."""
        data = json.loads(Path(path).read_text())
        data.pop("goals", None)
        parts = {"claim_costs": ClaimCost, "throughput": Throughput, "wake_ups": WakeUp, "pgbench": Pgbench}
        for key, kind in parts.items():
            data[key] = [kind(**item) for item in data.get(key, [])]
        return cls(**data)

    def table(self) -> str:
        """Every table of the run, one after another."""
        parts = [self.claim_table(), self.throughput_table(), self.wake_up_table(), self.pgbench_table()]
        goals = self.goals()
        if goals:
            parts.append("\n".join(["goals for the hardened design"] + [g.line() for g in goals]))
        if self.peers_missing:
            parts.append("\n".join(["peers not run"] + [f"  {line}" for line in self.peers_missing]))
        return "\n\n".join(part for part in parts if part)

    def claim_table(self) -> str:
        """Claim cost per depth for every claimer, and how much a claim at the deepest costs more."""
        if not self.claim_costs:
            return ""
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

    def jobs_per_s(self, runner: str, workers: int) -> float | None:
        """One throughput point's jobs/s, if it was measured."""
        return next(
            (t.jobs_per_s for t in self.throughput if t.runner == runner and t.workers == workers), None
        )

    def throughput_table(self) -> str:
        """Jobs/s per worker processes for every design and peer, and its ratio to the floor's."""
        if not self.throughput:
            return ""
        head = f"{'jobs/s (x the floor)':<34}" + "".join(f"{f'{n} worker' + ('s' if n > 1 else ''):>18}"
                                                          for n in self.workers)  # fmt: skip
        lines = [head]
        for runner in dict.fromkeys(t.runner for t in self.throughput):
            cells = ""
            for n in self.workers:
                rate, floor = self.jobs_per_s(runner, n), self.jobs_per_s(FLOOR, n)
                ratio = f" ({rate / floor:.2f}x)" if rate is not None and floor else ""
                cells += f"{(f'{rate:,.0f}' if rate is not None else '-') + ratio:>18}"
            lines.append(f"{runner:<34}{cells}")
        return "\n".join(lines)

    def wake_up_table(self) -> str:
        """How long a job waits for an idle worker, per design."""
        if not self.wake_ups:
            return ""
        lines = [f"{'wake-up (ms from commit to held)':<34}{'p50':>10}{'p90':>10}{'p99':>10}{'max':>10}"]
        for w in self.wake_ups:
            lines.append(
                f"{w.design:<34}{w.p50_ms:>10.1f}{w.p90_ms:>10.1f}{w.p99_ms:>10.1f}{w.max_ms:>10.1f}"
            )
        return "\n".join(lines)

    def pgbench_table(self) -> str:
        """pgbench's transactions per second, per client connection count."""
        if not self.pgbench:
            return ""
        cells = ", ".join(
            f"{p.clients} client{'s' if p.clients > 1 else ''}: {p.tps:,.0f}" for p in self.pgbench
        )
        return f"pgbench, single-row UPDATE ... RETURNING (transactions/s): {cells}"

    def goals(self) -> list[Goal]:
        """The hardened design's goals (issue 14, section 2), each with the number measured."""
        return _goals(self)


def _depth(n: int) -> str:
    return (
        f"{n // 1_000_000}M"
        if n >= 1_000_000 and n % 1_000_000 == 0
        else (f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n))
    )


def check_depths(depths: list[int]) -> list[int]:
    """The depths, increasing and each 1..10,000,000, or a one-line error naming the bad value."""
    if not depths:
        raise values.BadValue("bench needs at least one depth")
    for depth in depths:
        if not 1 <= depth <= MAX_DEPTH:
            raise values.BadValue(f"a depth is 1 to {MAX_DEPTH:,} waiting jobs, got {depth}")
    if sorted(set(depths)) != list(depths):
        raise values.BadValue(f"depths must increase, each once (the queue only grows), got {depths}")
    return list(depths)


def check_scenarios(scenarios: tuple[str, ...]) -> tuple[str, ...]:
    """The scenarios, each one bench knows and named once, or a one-line error naming the bad one."""
    for name in scenarios:
        if name not in SCENARIOS:
            raise values.BadValue(f"a bench scenario is one of {', '.join(SCENARIOS)}; got {name!r}")
    if not scenarios or len(set(scenarios)) != len(scenarios):
        raise values.BadValue(f"name each scenario once, at least one; got {', '.join(scenarios) or 'none'}")
    return scenarios


def check_samples(samples: int) -> int:
    """The number of timed claims per depth (1..1000), or a one-line error."""
    if not 1 <= samples <= 1000:
        raise values.BadValue(f"samples is 1 to 1000 timed claims per depth, got {samples}")
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
    """PGQUEUE_DSN's server, or a fresh embedded one in a private folder; the run's go with it, even failing.

    A fresh server keeps the learner's labs and their server's caches out of the numbers. Its
    settings are PostgreSQL's defaults (durable commits), as a queue that must not lose jobs needs.
    The bench's labs have names of their own, and templates: every throughput point starts from
    a fresh lab, copied rather than built again; they go with the run's other databases.
    """
    own_labs = {labs.PREFIX_ENV: PREFIX, labs.TEMPLATES_ENV: "1"}
    if os.environ.get(server.DSN_ENV, "").strip():
        with _environ(own_labs):
            try:
                yield "PGQUEUE_DSN"
            finally:  # a run that fails leaves none of its databases or roles there either
                labs.drop_every(PREFIX)
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
    """One design's database, with the bench's one-step pipeline of `bench_noop 1.0.0` jobs.

    For the claim cost, one pipe job holds every job (filled fast, in one statement); for
    throughput and wake-up, each job is a request of its own, as a submit makes it.
    """

    def __init__(self, design: str, *, one_pipe_job: bool = True) -> None:
        self.design = design
        q = _q()
        if design == "floor":
            self.database = _fresh_database(labs.prefix() + "floor")
            with self.connect() as conn:
                conn.execute(q["create_floor"])
            return
        labs.reset(design, examples=True)
        self.database = labs.database(design)
        with self.connect() as conn:
            self.pipe_id = conn.execute(q["bench_pipeline"]).fetchone()[0]
            conn.execute(q["bench_step"], {"pipe_id": self.pipe_id})
            if design != "notify-listen" and one_pipe_job:
                self.pipe_job_id = conn.execute(q["bench_pipe_job"], {"pipe_id": self.pipe_id}).fetchone()[0]

    def connect(self) -> psycopg.Connection:
        return server.connect(self.database, application_name="pgqueue bench")

    def waiting(self, conn: psycopg.Connection) -> int:
        name = "floor_waiting" if self.design == "floor" else "waiting"
        return conn.execute(_q()[name]).fetchone()[0]

    def add(self, conn: psycopg.Connection, jobs: int, *, requests: bool = False) -> None:
        """`jobs` more waiting jobs in one statement: in the one pipe job, or each a request of its own."""
        q = _q()
        if self.design == "floor":
            conn.execute(q["fill_floor"], {"jobs": jobs})
        elif self.design == "notify-listen":
            conn.execute(q["fill_notify_listen"], {"pipe_id": self.pipe_id, "jobs": jobs})
        elif requests:
            # a chunk per transaction: the triggers take a lock per new request, and one statement
            # of 8,000 ran out of PostgreSQL's lock table (max_locks_per_transaction)
            for first in range(0, jobs, REQUESTS_PER_FILL):
                chunk = min(REQUESTS_PER_FILL, jobs - first)
                conn.execute(q["fill_requests"], {"pipe_id": self.pipe_id, "jobs": chunk})
        else:
            conn.execute(q["fill_pipe_job"], {"pipe_id": self.pipe_id, "pipe_job_id": self.pipe_job_id,
                                              "jobs": jobs})  # fmt: skip

    def analyze(self, conn: psycopg.Connection) -> None:
        """Refresh the planner's statistics, as autovacuum would after a fill this size."""
        conn.execute(_q()["floor_analyze" if self.design == "floor" else "analyze"])

    def fill_to(self, conn: psycopg.Connection, depth: int) -> None:
        """Add waiting jobs until `depth` wait (one statement), then refresh the planner's statistics."""
        missing = depth - self.waiting(conn)
        if missing > 0:
            self.add(conn, missing)
        self.analyze(conn)


def claim_costs(
    depths: list[int],
    samples: int,
    progress: Callable[[str], None] = lambda line: None,
    claimers: tuple[Claimer, ...] = CLAIMERS,
) -> list[ClaimCost]:
    """Time `samples` claims of every claimer at each depth (after WARM_UP untimed ones).

    Each claim must take exactly its jobs: the queue is counted before and after, and a claim
    that found nothing is an error, not a fast number. Where a claimer says how, its jobs are
    finished after each claim, untimed, as its worker would finish them.
    """
    costs = []
    for claimer in claimers:
        queue = _Queue(claimer.design)
        who = Identity.new("bench_noop", "1.0.0")
        with queue.connect() as conn:
            for depth in depths:
                # claims take jobs: top up so that every timed claim finds `depth` or more waiting
                queue.fill_to(conn, depth + (WARM_UP + samples) * claimer.jobs_per_claim)
                before = queue.waiting(conn)
                timings = []
                for n in range(WARM_UP + samples):
                    started = time.perf_counter()
                    answer = claimer.claim(conn, who)
                    if n >= WARM_UP:
                        timings.append((time.perf_counter() - started) * 1000)
                    if claimer.finish:
                        claimer.finish(conn, who, answer)
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
                    explain(queue, claimer, who),
                )
                costs.append(cost)
                progress(
                    f"  {claimer.name:<30} {_depth(depth):>6} waiting: {cost.p50_ms:8.2f} ms per call (p50)"
                )
    return costs


def explain(queue: _Queue, claimer: Claimer, who: Identity) -> str:
    """The plans of one more claim: every statement it ran, with actual rows, timings and buffers.

    The connection first makes WARM_UP claims of its own: a first call also pays for looking
    up the catalog and compiling the functions, which the timed claims did not.
    """
    plans: list[str] = []
    with queue.connect() as conn:
        for _ in range(WARM_UP):
            answer = claimer.claim(conn, who)
            if claimer.finish:
                claimer.finish(conn, who, answer)
        conn.execute(_q()["explain_nested"])
        conn.add_notice_handler(lambda diag: plans.append(diag.message_primary or ""))
        claimer.claim(conn, who)
    # the statement that makes the call comes last (it ends last): the calls inside it first
    return "\n\n".join(plan for plan in plans if "Query Text" in plan)


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


# --- throughput -------------------------------------------------------------------------------

FULL_WORKERS = (1, 2, 4, 8)
QUICK_WORKERS = (1, 2)
FULL_JOBS, QUICK_JOBS = 20_000, 2_000  # no-op jobs per throughput point
FULL_WINDOW, QUICK_WINDOW = 10.0, 2.0  # seconds a point may last: a slow design is measured, not drained
MAX_WORKERS = 32
READY_TIMEOUT = 60.0  # seconds a worker process may take to start and connect
STOP_GRACE = 60.0  # seconds a worker may take, after its window, to say how many jobs it finished
REQUESTS_PER_FILL = 1000  # requests submitted per transaction when a queue is filled


@dataclass(frozen=True)
class Runner:
    """One thing whose throughput is measured: a design's worker loop, the floor's, or a peer's."""

    name: str
    kind: str  # pgqueue.bench.worker's KIND
    design: str  # its lab, "floor", or the peer's package
    batch: int = 1

    @property
    def peer(self) -> bool:
        return self.kind.startswith("peer:")


RUNNERS = (
    Runner("notify-listen", "notify-listen", "notify-listen"),
    Runner("single-call", "single-call", "single-call"),
    Runner("hardened", "hardened", "hardened"),
    Runner("hardened, batch of 10", "hardened", "hardened", 10),
    Runner(f"hardened, batch of {BATCH}", "hardened", "hardened", BATCH),
    Runner("floor (bare SKIP LOCKED)", "floor", "floor"),
    Runner(f"floor, batch of {BATCH}", "floor", "floor", BATCH),
)


def peer_runners() -> tuple[tuple[Runner, ...], list[str]]:
    """The installed peers as runners, and one line for each peer that is missing."""
    runners, missing = [], []
    for peer in peers.PEERS:
        why = peers.missing(peer)
        if why:
            missing.append(f"{peer.name}: {why}")
        else:
            runners.append(Runner(peer.name, f"peer:{peer.name}", peer.package, peer.batch))
    return tuple(runners), missing


@dataclass(frozen=True)
class Throughput:
    """Jobs finished per second by `workers` processes of one runner, on a fresh queue of `queued` jobs."""

    runner: str
    design: str
    batch: int
    workers: int
    queued: int
    jobs: int
    seconds: float
    jobs_per_s: float
    drained: bool  # the queue ran empty before the window closed


def _fresh_database(name: str) -> str:
    kit = queries.load("kit/queries.sql")
    with server.connect() as admin:
        admin.execute(sql.SQL(kit["drop_database"]).format(db=sql.Identifier(name)))
        admin.execute(sql.SQL(kit["create_database"]).format(db=sql.Identifier(name)))
    return name


def _prepare(runner: Runner, jobs: int) -> str:
    """A fresh database for one point with `jobs` waiting no-op jobs, each a request of its own."""
    if runner.peer:
        database = _fresh_database(labs.prefix() + "peer")
        peers.prepare(_peer(runner), server.resolve().uri_for(database), jobs)
        return database
    queue = _Queue(runner.design, one_pipe_job=False)
    with queue.connect() as conn:
        queue.add(conn, jobs, requests=True)
        queue.analyze(conn)
        if (waiting := queue.waiting(conn)) != jobs:
            raise PgQueueError(f"{runner.name}: the queue holds {waiting} jobs, not {jobs}")
    return queue.database


def _peer(runner: Runner) -> peers.Peer:
    return next(peer for peer in peers.PEERS if peer.name == runner.name)


def _finished(runner: Runner, database: str, queued: int) -> int:
    """How many of the point's jobs the database says are done (the workers' count is checked against it)."""
    if runner.peer:
        return queued - peers.remaining(_peer(runner), server.resolve().uri_for(database))
    name = "floor_finished" if runner.design == "floor" else "finished"
    with server.connect(database, application_name="pgqueue bench") as conn:
        return conn.execute(_q()[name]).fetchone()[0]


@contextlib.contextmanager
def _workers(argvs: list[list[str]]) -> Iterator[list[subprocess.Popen]]:
    """Worker processes (they die with this one), each ready (connected) when the block starts."""
    procs = []
    try:
        for argv in argvs:
            procs.append(
                children.spawn(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            )
        for proc in procs:
            _read(proc, "ready", READY_TIMEOUT)
        yield procs
    finally:
        for proc in procs:
            children.stop(proc)
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                with contextlib.suppress(OSError):
                    pipe.close()


def _read(proc: subprocess.Popen, what: str, timeout: float) -> dict:
    """The worker's next JSON line within `timeout` seconds, or an error saying what it did instead.

    The worker writes one whole line per message and flushes it, and nothing more until it is
    asked again, so a line is never half in the pipe's buffer while select waits.
    """
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else b""
    if not ready:
        raise PgQueueError(f"a bench worker did not say {what} within {timeout:g} s; it was stopped")
    if not line:
        proc.wait(READY_TIMEOUT)
        said = (proc.stderr.read().decode(errors="replace").strip().splitlines() or ["(nothing)"])[-1]
        raise PgQueueError(f"a bench worker exited ({proc.returncode}) before it said {what}: {said}")
    return json.loads(line)


def _worker_argv(kind: str, database: str, batch: int) -> list[str]:
    return [sys.executable, "-m", "pgqueue.bench.worker", kind, database, str(batch)]


def throughput(runner: Runner, workers: int, jobs: int, window: float) -> Throughput:
    """Release `workers` processes together on `jobs` fresh jobs; jobs/s until drained or `window` ends."""
    database = _prepare(runner, jobs)
    with _workers([_worker_argv(runner.kind, database, runner.batch)] * workers) as procs:
        for proc in procs:
            proc.stdin.write(f"go {window}\n".encode())
        for proc in procs:
            proc.stdin.flush()  # written first, flushed together: the processes start as one
        # past the window a worker finishes what it holds and stops; a peer flushes its acks too
        results = [_read(proc, "how many jobs it finished", window + STOP_GRACE) for proc in procs]
    done = sum(r["jobs"] for r in results)
    seconds = max(r["ended"] for r in results) - min(r["started"] for r in results)
    finished = _finished(runner, database, jobs)
    if finished != done:
        raise PgQueueError(
            f"{runner.name} with {workers} worker(s): the workers finished {done} jobs, the database "
            f"says {finished}; the number would not be jobs"
        )
    return Throughput(
        runner.name, runner.design, runner.batch, workers, jobs, done, round(seconds, 3),
        round(done / seconds, 1) if seconds > 0 else 0.0, done == jobs,
    )  # fmt: skip


# --- wake-up latency --------------------------------------------------------------------------

FULL_WAKE_SAMPLES = {"hardened": 200, "notify-listen": 30}
QUICK_WAKE_SAMPLES = {"hardened": 30, "notify-listen": 5}
WAKE_TIMEOUT = 30.0  # seconds a job may wait for the idle worker (its poll, 5 s, catches a lost wake-up)
# seconds from one job held to the next committed, at random: for notify-listen over one whole
# cycle of its idle worker (a beat, then the idle pause), so a job arrives at any moment of it
WAKE_GAP = {"hardened": (0.01, 0.05), "notify-listen": (0.0, notify_listen.Options().idle)}


@dataclass(frozen=True)
class WakeUp:
    """How long a job waited, from its commit to an idle worker holding it (milliseconds)."""

    design: str
    samples: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    all_ms: list[float]


def wake_up(design: str, samples: int) -> WakeUp:
    """Commit `samples` jobs one at a time, each after a random gap, to one idle worker; time each."""
    queue = _Queue(design, one_pipe_job=False)
    low, high = WAKE_GAP[design]
    waits = []
    worker = [_worker_argv(f"wake:{design}", queue.database, 1)]
    with queue.connect() as conn, _workers(worker) as (proc,):
        proc.stdin.write(f"go {samples * 10 + 30} {samples}\n".encode())
        proc.stdin.flush()
        for _ in range(samples):
            time.sleep(random.uniform(low, high))  # arrivals at random moments of the worker's cycle
            queue.add(conn, 1, requests=True)
            committed = time.monotonic()  # autocommit: the statement has committed
            held = _read(proc, "that it held the job", WAKE_TIMEOUT)["held"]
            waits.append(round((held - committed) * 1000, 3))
    return WakeUp(
        design, samples, round(statistics.median(waits), 3), round(_percentile(waits, 0.9), 3),
        round(_percentile(waits, 0.99), 3), max(waits), waits,
    )  # fmt: skip


# --- pgbench ----------------------------------------------------------------------------------

FULL_PGBENCH_CLIENTS, QUICK_PGBENCH_CLIENTS = (1, 2, 4, 8), (1,)
FULL_PGBENCH_SECONDS, QUICK_PGBENCH_SECONDS = 5, 2


@dataclass(frozen=True)
class Pgbench:
    """pgbench's transactions per second: one single-row `UPDATE ... RETURNING` each, as a claim is."""

    clients: int
    seconds: int
    tps: float


def pgbench_program() -> Path | None:
    """The pgbench beside the server's programs (the wheel's, or the system's for PGQUEUE_DSN)."""
    candidates = []
    if not os.environ.get(server.DSN_ENV, "").strip():
        candidates.append(wheel.bin_dir() / "pgbench")
    found = shutil.which("pgbench")
    candidates += [Path(found)] if found else []
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin/pgbench"), reverse=True)
    return next((c for c in candidates if c.is_file()), None)


def pgbench(clients: tuple[int, ...], seconds: int) -> list[Pgbench]:
    """pgbench on the floor's database: `clients` connections, `seconds` each, prepared statements."""
    program = pgbench_program()
    if program is None:
        raise PgQueueError("pgbench was not found (the embedded wheel's, on PATH, or /usr/lib/postgresql)")
    database = _fresh_database(labs.prefix() + "pgbench")
    with server.connect(database) as conn:
        conn.execute(_q()["create_pgbench_rows"])
    results = []
    with tempfile.TemporaryDirectory(prefix="pgqueue-bench-") as folder:
        script = Path(folder) / "claim.sql"
        script.write_text(_q()["pgbench_script"] + "\n")
        for n in clients:
            argv = [str(program), "-n", "-M", "prepared", "-f", str(script), "-c", str(n), "-j", str(n),
                    "-T", str(seconds), server.resolve().uri_for(database)]  # fmt: skip
            done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
            tps = [line for line in done.stdout.splitlines() if line.startswith("tps = ")]
            if done.returncode != 0 or not tps:
                said = (done.stderr.strip().splitlines() or ["(nothing)"])[-1]
                raise PgQueueError(f"pgbench with {n} client(s) failed ({done.returncode}): {said}")
            results.append(Pgbench(n, seconds, round(float(tps[0].split()[2]), 1)))
    return results


# --- the hardened design's goals -------------------------------------------------------------

FLOOR = "floor (bare SKIP LOCKED)"


@dataclass(frozen=True)
class Goal:
    """One goal of the hardened design, the number this run measured for it, and whether it was met."""

    goal: str
    measured: str
    met: bool | None  # None: this run did not measure it (a peer missing, say)

    def line(self) -> str:
        """The goal in one line of the table."""
        verdict = {True: "met", False: "MISSED", None: "not measured"}[self.met]
        return f"  {verdict:<13}{self.goal}: {self.measured}"


def _ratios(report: Report, runner: Callable[[Throughput], bool], other: Callable[[Throughput], bool]):
    """(workers, runner's jobs/s / other's) at each worker count where both were measured."""
    out = []
    for n in report.workers:
        mine = next((t.jobs_per_s for t in report.throughput if t.workers == n and runner(t)), None)
        theirs = next((t.jobs_per_s for t in report.throughput if t.workers == n and other(t)), None)
        if mine is not None and theirs:
            out.append((n, mine / theirs))
    return out


def _ratio_goal(goal: str, ratios: list[tuple[int, float]], least: float, missing: str) -> Goal:
    if not ratios:
        return Goal(goal, missing, None)
    text = ", ".join(f"{r:.2f}x with {n}" for n, r in ratios)
    return Goal(goal, f"{text} worker process(es)", all(r >= least for _, r in ratios))


def _not_run(report: Report, package: str) -> str:
    """Why a peer's number is missing: not installed here, or not asked for in this run."""
    if any(line.startswith(package) for line in report.peers_missing):
        return f"{package} is not installed (pip install -r requirements-bench.txt)"
    return f"{package} was not in this run, or not its hardened counterpart"


def _goals(report: Report) -> list[Goal]:
    goals = []
    costs = [c for c in report.claim_costs if c.claimer == "hardened (find_job)"]
    if len(costs) >= 2:
        first, last = costs[0], costs[-1]
        ratio = last.p50_ms / first.p50_ms
        goals.append(Goal(
            "claim cost flat: at 1M waiting jobs at most 1.3x its cost at 1k",
            f"{last.p50_ms:.2f} ms at {_depth(last.depth)}, {first.p50_ms:.2f} ms at {_depth(first.depth)}: "
            f"{ratio:.2f}x", ratio <= 1.3,
        ))  # fmt: skip

    def runner(name: str) -> Callable[[Throughput], bool]:
        return lambda t: t.runner == name

    def peer(package: str, batch: int | None = None) -> Callable[[Throughput], bool]:
        return lambda t: t.design == package and (batch is None or t.batch == batch)

    if report.throughput:
        goals.append(_ratio_goal(
            "single-job throughput at least 0.9x the bare SKIP LOCKED loop",
            _ratios(report, runner("hardened"), runner(FLOOR)), 0.9, "the floor was not run",
        ))  # fmt: skip
        for batch in (10, BATCH):
            goals.append(_ratio_goal(
                f"batch throughput at least 1.2x pgqueuer (batch of {batch})",
                _ratios(report, runner(f"hardened, batch of {batch}"), peer("pgqueuer", batch)), 1.2,
                _not_run(report, "pgqueuer"),
            ))  # fmt: skip
        goals.append(_ratio_goal(
            f"batch throughput (batch of {BATCH}) at least 7x procrastinate",
            _ratios(report, runner(f"hardened, batch of {BATCH}"), peer("procrastinate")), 7.0,
            _not_run(report, "procrastinate"),
        ))  # fmt: skip
    wake = next((w for w in report.wake_ups if w.design == "hardened"), None)
    if wake:
        goals.append(Goal("NOTIFY wake-up p50 at most 5 ms", f"{wake.p50_ms:.1f} ms", wake.p50_ms <= 5.0))
    return goals


def run(
    *,
    quick: bool = False,
    depths: list[int] | None = None,
    samples: int | None = None,
    scenarios: tuple[str, ...] = SCENARIOS,
    claimers: tuple[Claimer, ...] = CLAIMERS,
    runners: tuple[Runner, ...] | None = None,
    workers: list[int] | None = None,
    jobs: int | None = None,
    window: float | None = None,
    wake_samples: dict[str, int] | None = None,
    progress: Callable[[str], None] = lambda line: None,
) -> Report:
    """A whole bench run on a server of its own; the report (its tables, its JSON).

    Every scenario and its sizes can be narrowed (a lesson runs a small part live): the defaults
    are the full run's, or --quick's. `runners` None means the designs, the floor and every
    installed peer.
    """
    depths = check_depths(list(depths or (QUICK_DEPTHS if quick else FULL_DEPTHS)))
    samples = check_samples(samples or (QUICK_SAMPLES if quick else FULL_SAMPLES))
    scenarios = check_scenarios(scenarios)
    if unknown := sorted(set(wake_samples or {}) - set(WAKE_GAP)):
        raise values.BadValue(f"wake-up is measured for {', '.join(WAKE_GAP)}; got {', '.join(unknown)}")
    workers = list(workers or (QUICK_WORKERS if quick else FULL_WORKERS))
    if any(not 1 <= n <= MAX_WORKERS for n in workers):
        raise values.BadValue(f"worker processes are 1 to {MAX_WORKERS} per point, got {workers}")
    jobs = jobs or (QUICK_JOBS if quick else FULL_JOBS)
    window = window or (QUICK_WINDOW if quick else FULL_WINDOW)
    wake_samples = wake_samples or (QUICK_WAKE_SAMPLES if quick else FULL_WAKE_SAMPLES)
    started = time.monotonic()
    with own_server() as where:
        report = Report(
            machine=machine(),
            server={"version": server.version(), "where": where},
            quick=quick,
            depths=depths,
            samples=samples,
            workers=workers,
            jobs=jobs,
            window=window,
        )
        progress(f"pgqueue bench on {where} (PostgreSQL {report.server['version']})")
        if "claims" in scenarios:
            progress("claim cost per depth")
            report.claim_costs = claim_costs(depths, samples, progress, claimers)
        if "throughput" in scenarios:
            if runners is None:
                found, report.peers_missing = peer_runners()
                runners = RUNNERS + found
            for line in report.peers_missing:
                progress(f"  not run: {line}")
            progress(f"throughput: {jobs:,} no-op jobs, at most {window:g} s per point")
            for runner in runners:
                for n in workers:
                    point = throughput(runner, n, jobs, window)
                    report.throughput.append(point)
                    progress(f"  {runner.name:<34} {n} worker(s): {point.jobs_per_s:>10,.0f} jobs/s")
        if "wake-up" in scenarios:
            progress("wake-up: one idle worker, jobs committed one at a time")
            for design, count in wake_samples.items():
                wake = wake_up(design, count)
                report.wake_ups.append(wake)
                progress(f"  {design:<34} p50 {wake.p50_ms:8.1f} ms, p99 {wake.p99_ms:8.1f} ms")
        if "pgbench" in scenarios:
            clients = QUICK_PGBENCH_CLIENTS if quick else FULL_PGBENCH_CLIENTS
            report.pgbench = pgbench(clients, QUICK_PGBENCH_SECONDS if quick else FULL_PGBENCH_SECONDS)
            progress("  " + report.pgbench_table())
    report.seconds = round(time.monotonic() - started, 1)
    return report
