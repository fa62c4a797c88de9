"""Claim cost: a queue filled to each depth, then claims timed there one after another; one claim's plans."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from pgqueue import queries
from pgqueue.bench import databases, report
from pgqueue.bench.inputs import BATCH, FLOOR
from pgqueue.errors import PgQueueError
from pgqueue.queues import designs
from pgqueue.queues.heartbeats import Identity

WARM_UP = 3  # claims before the timed ones: the first calls plan their statements


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
    # the claim is what is timed: its statement is sent as is, with no design client in between
    def claim(conn: psycopg.Connection, who: Identity) -> object:
        params = {"uuid": who.uuid, "server": who.server, "name": who.name, "version": who.version, **extra}
        cur = conn.execute(queries.load(file)[name], params)
        return cur.fetchone() if cur.description else None  # a CALL of a procedure returns nothing

    return claim


def _hardened_finish(conn: psycopg.Connection, who: Identity, answer: object) -> None:
    designs.get("hardened").client(conn).finish_all(who, [job["job_id"] for job in json.loads(answer[0])])


def _floor_claim(conn: psycopg.Connection, who: Identity) -> object:
    return conn.execute(databases.q()["floor_claim"], {"uuid": who.uuid}).fetchone()


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
        _hardened_finish,
    ),
    Claimer(
        f"hardened, batch of {BATCH}",
        "hardened",
        BATCH,
        _sends("clients/hardened.sql", "find_job", multi=False, batch=BATCH),
        _hardened_finish,
    ),
    Claimer(FLOOR, "floor", 1, _floor_claim),
)


def measure(
    depths: list[int],
    samples: int,
    progress: Callable[[str], None] = lambda line: None,
    claimers: tuple[Claimer, ...] = CLAIMERS,
) -> list[report.ClaimCost]:
    """Time `samples` claims of every claimer at each depth (after WARM_UP untimed ones).

    Each claim must take exactly its jobs: the queue is counted before and after, and a claim
    that found nothing is an error, not a fast number. Where a claimer says how, its jobs are
    finished after each claim, untimed, as its worker would finish them.
    """
    costs = []
    for claimer in claimers:
        queue = databases.queue(claimer.design)
        who = Identity.new("bench_noop", "1.0.0")
        expected = (WARM_UP + samples) * claimer.jobs_per_claim
        with queue.connect() as conn:
            for depth in depths:
                # claims take jobs: top up so that every timed claim finds `depth` or more waiting
                queue.fill(conn, depth + expected)
                before = queue.count(conn, "waiting")
                timings = []
                for n in range(WARM_UP + samples):
                    started = time.perf_counter()
                    answer = claimer.claim(conn, who)
                    if n >= WARM_UP:
                        timings.append((time.perf_counter() - started) * 1000)
                    if claimer.finish:
                        claimer.finish(conn, who, answer)
                if (taken := before - queue.count(conn, "waiting")) != expected:
                    raise PgQueueError(
                        f"{claimer.name} at depth {depth}: {taken} jobs were taken by {WARM_UP + samples} "
                        f"claims, not {expected}; the numbers would not be claims"
                    )
                cost = report.ClaimCost(
                    claimer.name, claimer.design, depth, samples, claimer.jobs_per_claim,
                    round(statistics.median(timings), 3), round(report.percentile(timings, 0.9), 3),
                    round(statistics.fmean(timings), 3), explain(queue, claimer, who),
                )  # fmt: skip
                costs.append(cost)
                at = report.depth(depth)
                progress(f"  {claimer.name:<30} {at:>6} waiting: {cost.p50_ms:8.2f} ms per call (p50)")
    return costs


def explain(queue: databases.Queue, claimer: Claimer, who: Identity) -> str:
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
        conn.execute(databases.q()["explain_nested"])
        conn.add_notice_handler(lambda diag: plans.append(diag.message_primary or ""))
        claimer.claim(conn, who)
    # the statement that makes the call comes last (it ends last): the calls inside it first
    return "\n\n".join(plan for plan in plans if "Query Text" in plan)
