"""The single-call worker (POC 2): one call to find_job, then work, then create_jobs or finish_pipe."""

from __future__ import annotations

import functools
import json
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psycopg

from pgqueue import queries
from pgqueue.queues import client, designs, labs, options, steps
from pgqueue.queues.client import KILL, LOST_RACE, NO_JOB
from pgqueue.queues.worker_base import KILLED, WorkerBase

if TYPE_CHECKING:  # imported where used: workers start without them
    import pandas as pd

POC = "single-call"


_q = functools.partial(queries.load, "clients/single_call.sql")


@dataclass(frozen=True)
class Options(options.Checked):
    """How a worker waits and works (the original's values are the defaults)."""

    poll: float = options.seconds(5.0, "seconds to wait after 'No job found'")
    work: tuple[float, float] = options.work((0.0, 5.0), "simulated work, seconds")
    give_up: float = options.seconds(300.0, "seconds without a database before the worker gives up")


class Worker(WorkerBase):
    """One single-call worker; `run()` serves until killed, stopped, reset or out of patience."""

    poc = POC
    Options = Options
    gathers = False  # whether this process gathers parallel sets (find_job's multi mode)

    def find_job(self, conn: psycopg.Connection, multi: bool) -> str:
        """The one call: heartbeat, kill switch, and a claim, committed before it returns."""
        return self.client(conn).ask(self.who, multi=multi, batch=getattr(self.options, "batch", 1))

    def took(self, jobs: list[dict]) -> list[int]:
        """Say which jobs this worker now works on; their ids."""
        ids = [job["job_id"] for job in jobs]
        self._event("SUCCESS", f"job{'s' if len(ids) > 1 else ''} {ids} of pipe job {jobs[0]['pipe_job_id']}")
        return ids

    def handle(self, conn: psycopg.Connection, jobs: list[dict]) -> None:
        """Work on the jobs, then hand over, fan out or finish the pipe job."""
        self.take(self.took(jobs))
        if not self.work(random.uniform(*self.options.work), conn):
            return
        # planning reads the pipeline too: it is part of the step taken again after an outage
        self.complete(conn, lambda c, after_outage: self._act(c, steps.plan(c, self.who, jobs), after_outage))

    def _act(self, conn: psycopg.Connection, action: steps.Action, after_outage: bool) -> None:
        try:
            created = self.client(conn).act(None, action)
        except psycopg.errors.RaiseException as exc:
            message = exc.diag.message_primary or str(exc)
            if after_outage and "finished" in message:
                self._event(action.kind, f"{action.job_ids} (done before the connection was lost)")
            else:
                self._event("failed", message)
            return
        self._event(action.kind, action.said(created))

    def prepare(self, conn: psycopg.Connection) -> None:
        """What the loop reads first: whether this process gathers sets."""
        self.gathers = steps.gathers(conn, self.who)

    def idle(self, conn: psycopg.Connection) -> None:
        """Wait `poll` seconds before asking again (a stop cuts it short)."""
        self.stop.wait(self.options.poll)

    def serve(self, conn: psycopg.Connection) -> str | None:
        """Ask find_job again and again; work, then hand over; until killed or stopped."""
        self.prepare(conn)
        self.say_started(f"{self.who}{' gathers sets (multi mode)' if self.gathers else ''}")
        while not self.stop.is_set():
            try:
                answer = self.find_job(conn, self.gathers)
            except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure) as exc:
                self.pause_after_retry(f"find_job: {type(exc).__name__}")
                continue
            if answer == KILL:
                return KILLED
            if answer == LOST_RACE:
                self.pause_after_retry(LOST_RACE)
                continue
            self.retry.reset()
            if answer == NO_JOB:
                self._event("idle", NO_JOB)
                self.idle(conn)
            else:
                self.handle(conn, json.loads(answer))
        return None


def submit(pipe_id: int, request_id: int | None = None, priority: int = 100, *, poc: str = POC) -> int:
    """Create a pipe job (a request for one pipeline; the next free request id by default); its id.

    A pipe job of order 2 or more whose request has no unfinished pipe job of the order before
    is made, with an OrderGateWarning: nothing starts it until such work arrives and finishes.
    """
    with client.connect(poc) as c:
        return c.submit(pipe_id, request_id, priority)


def set_priority(pipe_job_id: int, priority: int, *, poc: str = POC) -> int:
    """Change a pipe job's priority (and its waiting jobs'); how many waiting jobs changed."""
    with labs.connect(poc) as conn:
        return designs.get(poc).client(conn).set_priority(pipe_job_id, priority)


def jobs() -> pd.DataFrame:
    """Every job of the single-call lab, oldest first."""
    return labs.frame(POC, _q()["jobs"])


def claims() -> pd.DataFrame:
    """Every claim: which jobs one find_job call handed out together, to whom, for which pipe job."""
    return labs.frame(POC, _q()["claims"])


def pipe_jobs() -> pd.DataFrame:
    """Every pipe job with its pipeline, order, priority, start, end and number of jobs."""
    return labs.frame(POC, _q()["pipe_jobs"])


def job_counts() -> dict[str, int]:
    """Jobs waiting, running and finished; pipe jobs finished and in all."""
    return labs.row(POC, _q()["job_counts"])
