"""The claim judge's forced schedules: two callers stopped inside their claim by the kit's hold."""

from __future__ import annotations

import random

import psycopg

from pgqueue import queries
from pgqueue.check.callers import wrong
from pgqueue.check.claim_calls import (
    HELD_WAIT_MS,
    LEASED_TWICE,
    ask,
    caller_connections,
    job_list,
    kept_out,
    parse,
    race_failure,
    waiting_jobs,
)
from pgqueue.check.core import Call, Hold, Verdict, holding
from pgqueue.queues import labs
from pgqueue.queues.client import NO_JOB
from pgqueue.wait import Timeout


def _q() -> queries.Queries:
    return queries.load("clients/check_claim_jobs.sql")


# the schedules forced with the kit's hold: which callers stop inside their claim (at its first
# UPDATE of job_queue), and in which order they are let go once the other has stopped or answered
SCHEDULES = (
    ("A", ("A",)),  # A held; B claims from start to end meanwhile; then A goes on
    ("AB", ("A", "B")),  # both held, A let go first
    ("AB", ("B", "A")),  # both held, B let go first
)


def held_inside(lab: labs.Scratch, conn: psycopg.Connection, verdict: Verdict, rng: random.Random) -> bool:
    """Callers A and B stopped inside their claim by the kit's hold, in each schedule of SCHEDULES.

    The hold (a statement trigger on job_queue, for callers the judge arms, while claim_jobs runs)
    stops a caller at the first UPDATE of job_queue its claim makes: after its pick when the pick
    is a statement of its own, before it when the UPDATE picks; its snapshot is taken either way.
    Each caller reads the table in its stored order (no index), as the planner does on a small
    queue. A right claim gives each caller jobs of its own whatever the schedule; a pick that
    locks nothing, a shared lock, or a lock that covers more than the jobs taken shows itself
    every time, not when callers happen to meet.
    """
    with lab.connect() as watch, holding(watch, "job_queue", when="BEFORE", event="UPDATE",
                                         level="STATEMENT", inside="claim_jobs") as hold:  # fmt: skip
        for n, (held, order) in enumerate(SCHEDULES, 1):
            version = f"held-inside-{n}"
            waiting = rng.randint(3, 5)
            waiting_jobs(conn, version, rng.sample(range(10, 300), waiting))
            if not _held_schedule(lab, hold, verdict, version, waiting, held, order):
                return False
    return True


def _held_schedule(
    lab: labs.Scratch, hold: Hold, verdict: Verdict, version: str, waiting: int, held: str, order: tuple
) -> bool:
    """One schedule: its ✓ line (none when no caller reached the hold), or its ✗ line and False."""
    names = ("A", "B")
    calls: dict[str, Call] = {}
    stops: dict[str, str | None] = {}
    locks: dict[str, int] = {}
    with caller_connections(lab, 2, HELD_WAIT_MS) as pair:
        conns = dict(zip(names, pair, strict=True))
        try:
            for slot, name in enumerate(names, 1):
                conns[name].execute(_q()["index_scans_off"])
                hold.arm(conns[name], slot if name in held else 0)
                if name in held:
                    hold.close(slot)
            for name in names:  # A first: B starts once A has stopped (or answered)
                calls[name] = Call(lambda c=conns[name]: ask(c, version, 1))
                stops[name] = hold.stops(conns[name], calls[name])
                if stops[name] == "held":
                    locks[name] = hold.advisory(conns[name])
            for name in order:
                hold.open(names.index(name) + 1)
                if name != order[-1]:
                    hold.stops(conns[name], calls[name])  # it answers, or waits for a lock the other holds
            results = {name: calls[name].join() for name in names}
            kept = {name: hold.advisory(conns[name]) for name in names}  # after the claim's transaction
        except Timeout as exc:
            return wrong(
                verdict,
                f"in a schedule with callers held inside their claim, a caller neither answered nor stopped "
                f"at a lock: {exc}",
            )
        finally:
            hold.open_all()
    if not any(stop == "held" for stop in stops.values()):
        return True  # no claim reached an UPDATE of job_queue: what it did is judged elsewhere
    if held == "A":
        what = "while caller A was held inside its claim (at its first UPDATE of job_queue), caller B " + (
            f"claimed and waited for a lock ({stops['B']}); then A was let go" if stops["B"] else
            "claimed from start to end; then A was let go"
        )  # fmt: skip
    else:
        b_stop = "answered first" if stops["B"] is None else f"waited for a lock ({stops['B']})"
        what = (
            "callers A and B each held inside its claim (at its first UPDATE of job_queue), "
            f"then {order[0]} let go first"
            + ("" if stops["B"] == "held" else f" (B never got there: it {b_stop})")
        )
    what += f", {waiting} jobs waiting, one asked by each"
    for name in names:
        if isinstance(results[name], BaseException):
            failure = race_failure(results[name])
            failure = (
                failure.removeprefix("a caller ") if failure.startswith("a caller ") else f"failed: {failure}"
            )
            return wrong(verdict, f"{what}: caller {name} {failure}")
    got = {name: parse(results[name]) for name in names}
    for name in names:
        if got[name] is None:
            return wrong(
                verdict,
                f"{what}: caller {name} answered {results[name]!r}: expected a JSON array of jobs or "
                f"{NO_JOB!r}",
            )
    ids = {name: [job["job_id"] for job in got[name]] for name in names}
    both = sorted(set(ids["A"]) & set(ids["B"]))
    if both:
        return wrong(verdict, f"{what}: job {both[0]} went to both callers: {LEASED_TWICE}")
    for name, other in (("A", "B"), ("B", "A")):
        if not ids[name]:
            return wrong(
                verdict,
                f"{what}: caller {name} got {NO_JOB!r} though {waiting - len(ids[other])} jobs besides "
                f"{job_list(ids[other])} waited{kept_out(other, locks.get(other, 0), kept[other])}; FOR "
                "UPDATE SKIP LOCKED locks only the rows the claim takes",
            )
    if held == "A" and stops["B"]:
        return wrong(
            verdict,
            f"{what}: B waited for a lock the held caller A had, then got {job_list(ids['B'])}; SKIP LOCKED "
            "passes over a job another caller is claiming and takes the next",
        )
    verdict.held.append(f"{what}: A got {job_list(ids['A'])}, B got {job_list(ids['B'])}, none of them both")
    return True
