"""Lesson 12's rescue judge, its scene and calls: leases made through the real find_job, and what it reads."""

from __future__ import annotations

import contextlib
import random
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
from psycopg.rows import class_row, dict_row

from pgqueue import queries
from pgqueue.check.callers import client
from pgqueue.check.core import Verdict, said
from pgqueue.queues import labs
from pgqueue.queues.heartbeats import Identity

NAME, VERSION = "first_process", "1.9.2"  # the first step of pipeline 2, which every worker here runs
# rescue_after is drawn for each call from this range (seconds), and is four times longer in the
# later checks: a constant written for it is wrong in one of the two
RESCUE_AFTER = (20, 45)
LATER = 4
SILENT, SLOW = 1.25, 0.8  # a silent worker's last beat, and a slow live one's, in rescue_afters
# max_attempts while the first calls judge, and in the check of a job out of attempts: a job that
# failed once and is held again must go back in the first, the second holder's job is dead-lettered
MAX_ATTEMPTS, FEWER_ATTEMPTS = 3, 2
LOCK_TIMEOUT = 2  # seconds a rescuer may wait for a row lock before it gives up
WAKE_WAIT = 2.0  # seconds to wait for a wake-up after a rescue
HELD = 10.0  # seconds to wait for a state the forced schedule expects


def _q() -> queries.Queries:
    return queries.load("clients/check_rescue_jobs.sql")


def worker_calls() -> queries.Queries:
    """The hardened workers' own calls: pulse and mark_stopped, which the design client has no verb for."""
    return queries.load("clients/hardened.sql")


def lesson_queries() -> queries.Queries:
    return labs.step("hardened", "find_job").lesson


@dataclass(frozen=True)
class Scene:
    """The leases the checker made before the learner's rescue_jobs was installed."""

    silent: Identity  # will stop beating: loses its two jobs, one of which failed once before
    silent_jobs: list[int]
    finished_job: int  # the silent worker finished this one before: not its to lose
    stopped: Identity  # said it stopped (mark_stopped), heartbeat fresh: loses its job
    stopped_job: int
    live: Identity  # keeps beating: keeps its job
    live_job: int
    dying: Identity  # holds a job on its last attempt (max_attempts): dead-lettered when silent
    dying_job: int
    late: Identity  # goes silent, then finishes its job late while a rescue runs
    late_job: int
    ghost: Identity  # its heartbeat row is gone (deleted), as if it never beat: loses its job
    ghost_job: int
    killed: Identity  # beats, busy with its job, its kill switch set: alive, keeps its job
    killed_job: int
    rescue_after: float  # seconds, drawn for this call

    def holders(self) -> dict[int, Identity]:
        """Every leased job of the scene and its worker."""
        pairs = [(j, self.silent) for j in self.silent_jobs] + [
            (self.stopped_job, self.stopped),
            (self.live_job, self.live),
            (self.dying_job, self.dying),
            (self.late_job, self.late),
            (self.ghost_job, self.ghost),
            (self.killed_job, self.killed),
        ]
        return dict(pairs)


def lease_scene(conn: psycopg.Connection) -> Scene:
    """Nine first_process jobs leased through find_job, every worker beating, the kit's rescue in place.

    One of the silent worker's jobs failed once before (another worker's attempt ended 'failed'), so
    its history has an ended attempt that a rescue must leave as it is.
    """
    lesson, calls = lesson_queries(), client(conn)
    rescue_after = float(random.Random(secrets.randbits(64)).randint(*RESCUE_AFTER))
    conn.execute(lesson["rescue_after"], {"seconds": rescue_after})
    conn.execute(lesson["retries"], {"max_attempts": MAX_ATTEMPTS, "base": 1})
    conn.execute(_q()["requests"], {"count": 9})
    first, dying = new_worker(), new_worker()
    (job,) = claim_ids(conn, first)
    # the first holder dies; the next caller's find_job rescues the job and takes it: attempt 2, its
    # last once check 5 sets max_attempts to FEWER_ATTEMPTS
    conn.execute(lesson["age_heartbeat"], {"uuid": first.uuid, "seconds": SILENT * rescue_after})
    if claim_ids(conn, dying) != [job]:
        raise RuntimeError(f"the kit's rescue_jobs did not hand job {job} to the next caller")
    silent, stopped, live, late, ghost, killed, failer = (new_worker() for _ in range(7))
    (finished,) = claim_ids(conn, silent)
    calls.hand_over(silent, [finished], [{}])
    (retried,) = claim_ids(conn, failer)
    calls.fail(failer, [retried], "it failed")
    conn.execute(lesson["run_now"], {"job_id": retried})  # its backoff skipped: the oldest waiting job
    silent_jobs = claim_ids(conn, silent, batch=2)
    if retried not in silent_jobs:
        raise RuntimeError(f"job {retried}, failed once and due, was not among {silent_jobs} leased next")
    (stopped_job,), (live_job,), (late_job,), (ghost_job,), (killed_job,) = (
        claim_ids(conn, who) for who in (stopped, live, late, ghost, killed)
    )
    return Scene(
        silent, silent_jobs, finished, stopped, stopped_job, live, live_job, dying, job, late, late_job,
        ghost, ghost_job, killed, killed_job, rescue_after,
    )  # fmt: skip


def new_worker(version: str = VERSION) -> Identity:
    return Identity.new(NAME, version)


def claim_ids(conn: psycopg.Connection, who: Identity, batch: int = 1) -> list[int]:
    """The ids of the jobs `who` leases with one find_job call."""
    return [job["job_id"] for job in client(conn).claim(who, batch=batch)]


@dataclass(frozen=True)
class Job:
    """A job as the checker judges it, with its latest attempt."""

    job_id: int
    holder: str | None
    finished: bool
    dead: bool
    error: str | None
    attempts: int
    tried_by: str | None
    running: bool
    outcome: str | None


def job_now(conn: psycopg.Connection, job_id: int) -> Job:
    with conn.cursor(row_factory=class_row(Job)) as cur:
        return cur.execute(_q()["job"], {"job_id": job_id}).fetchone()


def call_rescue(conn: psycopg.Connection, verdict: Verdict, when: str) -> int | None:
    """What the learner's rescue_jobs returned, or None after saying how it failed or what it returned."""
    try:
        freed = conn.execute(_q()["rescue"]).fetchone()[0]
    except psycopg.Error as exc:
        verdict.refuse(f"{when}, your rescue_jobs failed: {said(exc)}")
        return None
    if not isinstance(freed, int):
        verdict.refuse(
            f"{when}, your rescue_jobs returned {freed!r}: it returns how many jobs it freed "
            "(RETURNS integer)"
        )
        return None
    return freed


def age_heartbeat(conn: psycopg.Connection, who: Identity, seconds: float) -> None:
    """Move `who`'s last heartbeat `seconds` back."""
    conn.execute(lesson_queries()["age_heartbeat"], {"uuid": who.uuid, "seconds": seconds})


def ended_attempts(conn: psycopg.Connection) -> dict[int, dict]:
    """Every attempt that has ended, whole, by its id."""
    with conn.cursor(row_factory=dict_row) as cur:
        return {row["attempt_id"]: row for row in cur.execute(_q()["ended_attempts"])}


def beat_age(conn: psycopg.Connection, who: Identity) -> float:
    return conn.execute(_q()["beat_age"], {"uuid": who.uuid}).fetchone()[0]


@contextlib.contextmanager
def rescuer_connection(lab: labs.Scratch) -> Iterator[psycopg.Connection]:
    """A connection that gives up on a row lock after LOCK_TIMEOUT s."""
    with lab.connect() as conn:
        conn.execute(_q()["lock_timeout"], {"ms": str(LOCK_TIMEOUT * 1000)})
        yield conn
