"""The hardened worker: leases by SKIP LOCKED, a pulse while it works, failures retried, NOTIFY to wake."""

from __future__ import annotations

import contextlib
import json
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

from pgqueue import queries
from pgqueue.errors import PgQueueError
from pgqueue.queues import client, designs, labs, options, steps
from pgqueue.queues.client import KILL, NO_JOB
from pgqueue.queues.events import EventLog
from pgqueue.queues.heartbeats import Identity
from pgqueue.queues.worker_base import KILLED, WorkerBase

if TYPE_CHECKING:  # imported where used: workers start without them
    import pandas as pd

POC = "hardened"


def _q() -> queries.Queries:
    return queries.load("clients/hardened.sql")


@dataclass(frozen=True)
class Options:
    """How a hardened worker waits, claims and works."""

    poll: float = options.seconds(5.0, "seconds to wait for a wake-up before asking again")
    work: tuple[float, float] = options.work((0.0, 5.0), "simulated work, seconds")
    batch: int = options.count(1, "jobs claimed per call (single mode)", 1, 1000)
    fail: float = options.chance(0.0, "chance that the simulated work of a job fails (the failure lab)")
    give_up: float = options.seconds(300.0, "seconds without a database before the worker gives up")

    def __post_init__(self) -> None:
        options.validate(self)


class WorkFailed(Exception):
    """The simulated work of a job failed (Options.fail): one failed attempt, not a dead worker."""


class _Pulse:
    """While a worker works, its heartbeat goes on from a thread of its own, so it keeps its leases."""

    def __init__(self, worker: Worker, every: float) -> None:
        self.worker, self.every = worker, every
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._beat, name=f"pulse {worker.who.uuid}", daemon=True)

    def __enter__(self) -> _Pulse:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join(10)

    def _beat(self) -> None:
        try:
            with self.worker._connect() as conn:
                while not self.done.wait(self.every):
                    conn.execute(_q()["pulse"], {"uuid": self.worker.who.uuid})
        except (psycopg.Error, PgQueueError):
            pass  # the worker's own connection notices an outage; the lease is rescued if it lasts


class Worker(WorkerBase):
    """One hardened worker; `run()` serves until killed, stopped, reset or out of patience."""

    poc = POC

    def __init__(self, who: Identity, options: Options | None = None, log: EventLog | None = None):
        super().__init__(who, options or Options(), log)
        self._started = False
        self._pulse_every = 1.0
        self._gathers = False
        self._role: str | None = None  # the lab's worker role, once looked up

    def _connect(self, *, start: bool = True) -> psycopg.Connection:
        """A connection as the lab's worker role, which may call the queue's functions and no more."""
        if self._role is None:
            self._role = worker_role(start=start) or ""
            if not self._role:
                self._event(
                    "warning",
                    f"lab {POC} has no worker role (its owner may not create roles): this worker "
                    "connects as the owner, who may do anything to the tables",
                )
        name = f"{labs.WORKER_APPLICATION} {self.poc} {self.who}"[:63]
        return labs.connect(self.poc, application_name=name, start=start, user=self._role or None)

    def serves_a_step(self, conn: psycopg.Connection) -> bool:
        """Whether any pipeline has a step for this process (asked through worker_setup)."""
        return self._setup(conn)["serves"]

    def say_stopped(self, conn: psycopg.Connection) -> None:
        """Tell the lab this worker exits cleanly, through the call its role may make."""
        conn.execute(_q()["mark_stopped"], {"uuid": self.who.uuid})

    def _setup(self, conn: psycopg.Connection) -> dict:
        params = {"name": self.who.name, "version": self.who.version}
        with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
            return cur.execute(_q()["worker_setup"], params).fetchone()

    def handle(self, conn: psycopg.Connection, jobs: list[dict]) -> None:
        """Work on the jobs while a pulse keeps their lease, then hand over or finish, or report a failure.

        A batch's last-step jobs are finished together at its end, in one call (finish_pipes):
        one commit for the batch, not one per job.
        """
        batches = [jobs] if self._gathers else [[job] for job in jobs]
        last_steps: dict[tuple[int, str], bool] = {}  # one question per step, not one per job
        finished: list[int] = []
        for batch in batches:
            if self.abort.is_set():
                return  # jobs worked but not yet finished keep their lease until rescued: run again
            ids = [job["job_id"] for job in batch]
            self.take(finished + ids)
            self._event(
                "SUCCESS", f"job{'s' if len(ids) > 1 else ''} {ids} of pipe job {batch[0]['pipe_job_id']}"
            )
            try:
                with _Pulse(self, self._pulse_every):
                    if not self.work(random.uniform(*self.options.work), conn):
                        return
                    if random.random() < self.options.fail:
                        raise WorkFailed(f"the simulated work of job(s) {ids} failed")
            except WorkFailed as exc:
                self.take(ids)  # complete() counts what it finishes from what is held
                self.complete(conn, lambda c, _after, ids=ids, why=str(exc): self._fail(c, ids, why))
                self.take(finished)
                continue
            step = (batch[0]["pipe_id"], batch[0]["job_process_name"])
            if len(batches) > 1 and last_steps.setdefault(step, _last_step(conn, batch[0])):
                finished += ids
                continue
            self.take(ids)
            self.complete(
                conn,
                lambda c, _after, batch=batch: self._act(c, steps.plan(c, self.who, batch, _last_step)),
            )
            self.take(finished)
        if finished:
            self.complete(conn, lambda c, _after, ids=finished: self._finish_all(c, ids))

    def _finish_all(self, conn: psycopg.Connection, ids: list[int]) -> None:
        with self._holding():
            designs.get(POC).client(conn).finish_all(self.who, ids)
            self._event("finish_pipe", f"the pipe jobs of jobs {ids}")

    def _act(self, conn: psycopg.Connection, action: steps.Action) -> None:
        with self._holding():
            created = designs.get(POC).client(conn).act(self.who, action)
            detail = (
                f"pipe job {action.pipe_job_id}"
                if action.payloads is None
                else f"{action.job_ids} -> {created}"
            )
            self._event(action.kind, detail)

    def _fail(self, conn: psycopg.Connection, ids: list[int], why: str) -> None:
        with self._holding():
            designs.get(POC).client(conn).fail(self.who, ids, why)
            self._event("failed", why)

    @contextlib.contextmanager
    def _holding(self) -> Iterator[None]:
        """Calls only the jobs' holder may make: once rescued while this worker was silent, 'lost'."""
        try:
            yield
        except psycopg.errors.ObjectNotInPrerequisiteState as exc:
            self._event("lost", exc.diag.message_primary or str(exc))

    def _idle(self, conn: psycopg.Connection) -> None:
        """Wait for a wake-up, at most `poll` seconds (a lost NOTIFY costs a poll, not a job)."""
        deadline = self.options.poll
        waited = 0.0
        while waited < deadline and not self.stop.is_set():
            step = min(0.5, deadline - waited)
            if any(True for _ in conn.notifies(timeout=step, stop_after=1)):
                return
            waited += step

    def serve(self, conn: psycopg.Connection) -> str | None:
        """Ask find_job again and again; work, then hand over; until killed or stopped."""
        setup = self._setup(conn)
        self._gathers = setup["gathers"]
        self._pulse_every = setup["rescue_after_s"] / 3  # at least twice within rescue_after, with room
        listen = queries.load("clients/notify_listen.sql")["listen"]
        conn.execute(sql.SQL(listen).format(channel=sql.Identifier(setup["channel"])))
        if not self._started:
            self._started = True
            self._event("start", f"{self.who}{' gathers sets (multi mode)' if self._gathers else ''}")
        while not self.stop.is_set():
            try:
                answer = (
                    designs.get(POC).client(conn).ask(self.who, multi=self._gathers, batch=self.options.batch)
                )
            except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure) as exc:
                self.pause_after_retry(f"find_job: {type(exc).__name__}")
                continue
            if answer == KILL:
                return KILLED
            self.retry.reset()
            if answer == NO_JOB:
                self._event("idle", NO_JOB)
                self._idle(conn)
            else:
                self.handle(conn, json.loads(answer))
        return None


def _last_step(conn: psycopg.Connection, job: dict) -> bool:
    params = {"pipe_id": job["pipe_id"], "name": job["job_process_name"]}
    return conn.execute(_q()["is_last_step"], params).fetchone()[0]


def worker_role(*, start: bool = True) -> str | None:
    """The role the hardened lab's workers connect as, or None when the lab could not make one."""
    with labs.connect(POC, start=start) as conn:
        row = conn.execute(_q()["worker_role"]).fetchone()
    return row[0] if row else None


def setup_notes() -> list[str]:
    """What a learner should know about the lab just built: here, a missing worker role."""
    if worker_role() is not None:
        return []
    with labs.connect(POC) as conn:
        owner = conn.info.user
    return [
        f"lab {POC} runs without a worker role: {owner!r} may not create roles (it needs CREATEROLE), "
        f"so its workers connect as {owner!r}, who may change every table"
    ]


def submit(pipe_id: int, request_id: int | None = None, priority: int = 100) -> int:
    """Create a pipe job (the next free request id by default); its id. A refused one says why."""
    with client.connect(POC) as c:
        return c.submit(pipe_id, request_id, priority)


def set_priority(pipe_job_id: int, priority: int) -> int:
    """Change a pipe job's priority (and its waiting jobs'); how many waiting jobs changed."""
    with labs.connect(POC) as conn:
        return designs.get(POC).client(conn).set_priority(pipe_job_id, priority)


def jobs() -> pd.DataFrame:
    """Every job of the hardened lab, oldest first."""
    return labs.frame(POC, queries.load("clients/single_call.sql")["jobs"])


def attempts() -> pd.DataFrame:
    """Every attempt at a job: who ran it, when, and how it ended (succeeded, failed, rescued)."""
    return labs.frame(POC, _q()["attempts"])


def pipe_jobs() -> pd.DataFrame:
    """Every pipe job with its pipeline, order, priority, start, end and number of jobs."""
    return labs.frame(POC, queries.load("clients/single_call.sql")["pipe_jobs"])


def job_counts() -> dict[str, int]:
    """Jobs waiting, running, finished and dead; pipe jobs finished and in all."""
    with labs.connect(POC) as conn:
        cur = conn.execute(_q()["job_counts"])
        return dict(zip([c.name for c in cur.description], cur.fetchone(), strict=True))
