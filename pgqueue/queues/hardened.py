"""The hardened worker: leases by SKIP LOCKED, a pulse while it works, failures retried, NOTIFY to wake."""

from __future__ import annotations

import contextlib
import functools
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

from pgqueue import queries
from pgqueue.errors import PgQueueError
from pgqueue.queues import labs, options, single_call, steps

if TYPE_CHECKING:  # imported where used: workers start without them
    import pandas as pd

POC = "hardened"


_q = functools.partial(queries.load, "clients/hardened.sql")


@dataclass(frozen=True)
class Options(single_call.Options):
    """How a hardened worker waits, claims and works (single call's options, and batch and fail)."""

    poll: float = options.seconds(5.0, "seconds to wait for a wake-up before asking again")
    batch: int = options.count(1, "jobs claimed per call (single mode)", 1, 1000)
    fail: float = options.chance(0.0, "chance that the simulated work of a job fails (the failure lab)")


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


class Worker(single_call.Worker):
    """One hardened worker; `run()` serves until killed, stopped, reset or out of patience."""

    poc = POC
    Options = Options
    _pulse_every = 1.0
    _role: str | None = None  # the lab's worker role, once looked up

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
        return super()._connect(start=start, user=self._role or None)

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

    def prepare(self, conn: psycopg.Connection) -> None:
        """Whether this process gathers, how often it pulses, and LISTEN for wake-ups."""
        setup = self._setup(conn)
        self.gathers = setup["gathers"]
        self._pulse_every = setup["rescue_after_s"] / 3  # at least twice within rescue_after, with room
        listen = queries.load("clients/notify_listen.sql")["listen"]
        conn.execute(sql.SQL(listen).format(channel=sql.Identifier(setup["channel"])))

    def handle(self, conn: psycopg.Connection, jobs: list[dict]) -> None:
        """Work on the jobs while a pulse keeps their lease, then hand over or finish, or report a failure.

        A batch's last-step jobs are finished together at its end, in one call (finish_pipes):
        one commit for the batch, not one per job.
        """
        batches = [jobs] if self.gathers else [[job] for job in jobs]
        last_steps: dict[tuple[int, str], bool] = {}  # one question per step, not one per job
        finished: list[int] = []
        for batch in batches:
            if self.abort.is_set():
                return  # jobs worked but not yet finished keep their lease until rescued: run again
            ids = self.took(batch)
            self.take(finished + ids)
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
            self.client(conn).finish_all(self.who, ids)
            self._event("finish_pipe", f"the pipe jobs of jobs {ids}")

    def _act(self, conn: psycopg.Connection, action: steps.Action) -> None:
        with self._holding():
            self._event(action.kind, action.said(self.client(conn).act(self.who, action)))

    def _fail(self, conn: psycopg.Connection, ids: list[int], why: str) -> None:
        with self._holding():
            self.client(conn).fail(self.who, ids, why)
            self._event("failed", why)

    @contextlib.contextmanager
    def _holding(self) -> Iterator[None]:
        """Calls only the jobs' holder may make: once rescued while this worker was silent, 'lost'."""
        try:
            yield
        except psycopg.errors.ObjectNotInPrerequisiteState as exc:
            self._event("lost", exc.diag.message_primary or str(exc))

    def idle(self, conn: psycopg.Connection) -> None:
        """Wait for a wake-up, at most `poll` seconds (a lost NOTIFY costs a poll, not a job)."""
        deadline = time.monotonic() + self.options.poll
        while (left := deadline - time.monotonic()) > 0 and not self.stop.is_set():
            if any(True for _ in conn.notifies(timeout=min(0.5, left), stop_after=1)):
                return


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
    return single_call.submit(pipe_id, request_id, priority, poc=POC)


def set_priority(pipe_job_id: int, priority: int) -> int:
    """Change a pipe job's priority (and its waiting jobs'); how many waiting jobs changed."""
    return single_call.set_priority(pipe_job_id, priority, poc=POC)


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
    return labs.row(POC, _q()["job_counts"])
