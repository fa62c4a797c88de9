"""Lesson 12's claim judge, its scene and calls: jobs placed by hand, find_job asked as their workers ask."""

from __future__ import annotations

import contextlib
import json
import random
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg

from pgqueue import queries
from pgqueue.check.callers import client
from pgqueue.check.core import Verdict, said
from pgqueue.queues import labs
from pgqueue.queues.client import NO_JOB
from pgqueue.queues.heartbeats import Identity

NAME, VERSION = "checked_process", "1.0.0"  # the process whose workers call find_job
HELD_WAIT_MS = 10_000  # lock_timeout of callers in a held schedule: the hold itself is a lock wait
# a job placed by hand waits, unless its columns say otherwise
PLACED = {
    "name": NAME,
    "version": VERSION,
    "taken_by": None,
    "finished": False,
    "dead": False,
    "due_in": 0.0,
    "attempts": 0,
    "error": None,
}


def _q() -> queries.Queries:
    return queries.load("clients/check_claim_jobs.sql")


@dataclass(frozen=True)
class Job:
    """One job the checker placed; `never` says why no caller may get it (None: it waits)."""

    job_id: int
    priority: int
    age: int  # seconds before the scene was made: larger is older
    never: str | None = None

    def __str__(self) -> str:
        return f"job {self.job_id} (priority {self.priority}, {self.age} s old)"


def waiting_order(rng: random.Random) -> tuple[list[tuple[int, int]], list[int]]:
    """(priority, age) of the waiting jobs in the order they are placed, and each call's batch_size.

    Six to eight jobs over three priorities, ages distinct, placed in neither the order they are
    served in nor its reverse. The first call takes the best few; at its edge two jobs share a
    priority and the younger is placed first, so only their age (not their id) orders them. Then
    one job, then more than are left, then one more. The ages never agree with the priorities in
    what the first two calls get, so an order by age alone is seen.
    """
    count, first = rng.randint(6, 8), rng.randint(2, 4)
    levels = sorted(rng.sample(range(20, 300, 10), 3))
    # drawn again until the oldest-first order differs from the served one in the first two calls
    # (a draw whose jobs all share one priority never does, so the priorities are drawn again too)
    while True:
        priorities = sorted(rng.choice(levels) for _ in range(count))
        priorities[first] = priorities[first - 1]
        priorities.sort()
        ages = rng.sample(range(10, 500), count)
        served = sorted(zip(priorities, ages, strict=True), key=lambda pa: (pa[0], -pa[1]))
        by_age = sorted(served, key=lambda pa: -pa[1])
        if set(by_age[:first]) != set(served[:first]) or by_age[first] != served[first]:
            break
    placed = served[:]
    while placed in (served, served[::-1]) or placed.index(served[first]) > placed.index(served[first - 1]):
        rng.shuffle(placed)
    return placed, [first, 1, rng.randint(count + 1, 200), 1]


def job_list(ids) -> str:
    """'job 3', 'jobs 3, 5' or 'none'."""
    ids = sorted(ids)
    if not ids:
        return "none"
    return ("job " if len(ids) == 1 else "jobs ") + ", ".join(str(i) for i in ids)


def new_pipe_job(conn: psycopg.Connection) -> int:
    """A pipe job of a request of its own, for the jobs placed next."""
    return conn.execute(_q()["pipe_job"]).fetchone()[0]


def place(
    conn: psycopg.Connection, pipe_job: int, priority: int, age: int, never: str | None = None, **columns
) -> Job:
    """One job placed by hand in `pipe_job`, `age` s old: waiting unless `columns` (see PLACED) say not."""
    params = {**PLACED, **columns, "pipe_job_id": pipe_job, "priority": priority, "age": float(age)}
    return Job(conn.execute(_q()["place"], params).fetchone()[0], priority, age, never)


def waiting_jobs(conn: psycopg.Connection, version: str, ages) -> list[Job]:
    """Waiting jobs of NAME `version`, priority 100, `ages` seconds old, in a pipe job of their own."""
    scene = new_pipe_job(conn)
    return [place(conn, scene, 100, age, version=version) for age in ages]


@contextlib.contextmanager
def caller_connections(lab: labs.Scratch, n: int, lock_wait_ms: int) -> Iterator[list[psycopg.Connection]]:
    """`n` callers' connections, each giving up on a lock after `lock_wait_ms`; closed on the way out."""
    with contextlib.ExitStack() as stack:
        conns = [stack.enter_context(lab.connect()) for _ in range(n)]
        for c in conns:
            c.execute(_q()["lock_timeout"], {"ms": str(lock_wait_ms)})
        yield conns


def ask(conn: psycopg.Connection, version: str, batch: int, uuid: str | None = None) -> str:
    """find_job's answer to one call of a worker of NAME `version` (a new one, unless `uuid` is given)."""
    return client(conn).ask(Identity.new(NAME, version, uuid), batch=batch)


def handed(
    conn: psycopg.Connection, version: str, batch: int, verdict: Verdict, who: str, uuid: str | None = None
) -> list[dict] | None:
    """The jobs one find_job call was handed ([] for `No job found`), or None after saying what went wrong."""
    try:
        answer = ask(conn, version, batch, uuid)
    except psycopg.Error as exc:
        verdict.refuse(f"{who} failed: {said(exc)}")
        return None
    jobs = parse(answer)
    if jobs is None:
        verdict.refuse(f"{who} answered {answer!r}: expected a JSON array of jobs or {NO_JOB!r}")
    return jobs


def parse(answer: str) -> list[dict] | None:
    """The jobs in find_job's answer ([] for NO_JOB), or None if it is neither."""
    if answer == NO_JOB:
        return []
    try:
        jobs = json.loads(answer)
    except (TypeError, ValueError):
        return None
    if not isinstance(jobs, list) or not all(isinstance(j, dict) and "job_id" in j for j in jobs):
        return None
    return jobs


LEASED_TWICE = (
    "a caller's snapshot may still show as waiting a job another caller leased a moment ago; only a row lock "
    "(FOR UPDATE SKIP LOCKED) re-reads the row's latest version before taking it, and passes over it when "
    "it is taken"
)


def race_failure(exc: BaseException) -> str:
    """A caller's failure in a race, in a sentence with its likely cause."""
    if isinstance(exc, psycopg.errors.UniqueViolation):
        key = re.search(r"=\((\d+)\)", exc.diag.message_detail or "")
        job = f"job {key.group(1)}" if key else "one job"
        return (
            f"two callers leased {job} at once: job_attempts refused the second's attempt while the first's "
            f"ran ({said(exc)}): {LEASED_TWICE}"
        )
    if isinstance(exc, psycopg.errors.DeadlockDetected | psycopg.errors.LockNotAvailable):
        return (
            f"a caller failed waiting for a lock ({said(exc)}): two callers held one job with a shared lock "
            "(FOR SHARE lets them), then each waited for the other's to lease it; FOR UPDATE SKIP LOCKED "
            "lets one caller alone lock a job, and the others pass over it"
        )
    return f"a caller failed: {said(exc)}"


def kept_out(other: str, held_locks: int, kept: int) -> str:
    """What caller `other` held that kept every job from the caller that got none: '' if nothing."""
    if held_locks > 1:
        return (
            f"; while it claimed one job, caller {other} held {held_locks} advisory locks"
            + (f", and still held {kept} once its claim had ended" if kept else "")
            + ": an advisory lock taken in the WHERE is taken on every row the plan reads, not only on "
            "the batch_size rows LIMIT keeps"
            + (
                "; pg_try_advisory_lock lasts until that connection unlocks it or closes"
                if kept
                else ", and held to the end of the transaction"
            )
        )
    if held_locks:
        return (
            f"; something caller {other}'s claim holds keeps every job from the other (a lock on the "
            "process, say)"
        )
    return ""


def timed(took: dict[int, float], i: int, call):
    """`call()`, its duration (seconds) kept in took[i] whether it answered or raised."""
    started = time.monotonic()
    try:
        return call()
    finally:
        took[i] = time.monotonic() - started
