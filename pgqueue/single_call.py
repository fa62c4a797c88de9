"""The single-call worker (POC 2): one call to find_job, then work, then create_jobs or finish_pipe."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import psycopg

from pgqueue import labs, options, processes, queries
from pgqueue.errors import PgQueueError
from pgqueue.events import EventLog
from pgqueue.heartbeats import Identity
from pgqueue.worker_base import WorkerBase

if TYPE_CHECKING:  # imported where used: workers start without them
    import pandas as pd

POC = "single-call"
KILL = "kill"
NO_JOB = "No job found"
LOST_RACE = "Retry, I lost the job race"


def _q() -> queries.Queries:
    return queries.load("clients/single_call.sql")


@dataclass(frozen=True)
class Options:
    """How a worker waits and works (the original's values are the defaults)."""

    poll: float = field(default=5.0, metadata={"help": "seconds to wait after 'No job found'"})
    work: tuple[float, float] = field(default=(0.0, 5.0), metadata={"help": "simulated work, seconds"})

    def __post_init__(self) -> None:
        options.check_seconds(self, "poll", "work")


class Worker(WorkerBase):
    """One single-call worker; `run()` loops until killed (kill switch) or `stop` is set."""

    poc = POC

    def __init__(self, who: Identity, options: Options | None = None, log: EventLog | None = None):
        super().__init__(who, options or Options(), log)

    def find_job(self, conn: psycopg.Connection, multi: bool) -> str:
        """The one call: heartbeat, kill switch, and a claim, committed before it returns."""
        params = {
            "uuid": self.who.uuid,
            "server": self.who.server,
            "name": self.who.name,
            "version": self.who.version,
            "multi": multi,
        }
        return conn.execute(_q()["find_job"], params).fetchone()[0]

    def handle(self, conn: psycopg.Connection, jobs: list[dict]) -> None:
        """Work on the jobs, then hand over, fan out or finish the pipe job."""
        ids = [job["job_id"] for job in jobs]
        self._event("SUCCESS", f"job{'s' if len(ids) > 1 else ''} {ids} of pipe job {jobs[0]['pipe_job_id']}")
        if self.stop.wait(random.uniform(*self.options.work)):
            return
        action = processes.plan(conn, self.who, jobs)
        try:
            created = processes.act(conn, action)
        except psycopg.errors.RaiseException as exc:
            self._event("failed", exc.diag.message_primary or str(exc))
            return
        detail = f"pipe job {action.pipe_job_id}" if action.kind == "finish_pipe" else f"{ids} -> {created}"
        self._event(action.kind, detail)

    def run(self) -> str:
        """Loop until killed or stopped; returns why it ended: 'kill' or 'stopped'."""
        with self._connect() as conn:
            multi = processes.gathers(conn, self.who)
            self._event("start", f"{self.who}{' gathers sets (multi mode)' if multi else ''}")
            while not self.stop.is_set():
                answer = self.find_job(conn, multi)
                if answer == KILL:
                    self._event("kill", "kill switch set: exiting")
                    return "kill"
                if answer == LOST_RACE:
                    self._event("retry", LOST_RACE)
                elif answer == NO_JOB:
                    self._event("idle", NO_JOB)
                    self.stop.wait(self.options.poll)
                else:
                    self.handle(conn, json.loads(answer))
        self._event("stop", "stopped")
        return "stopped"


def _check_priority(priority: int) -> None:
    if not isinstance(priority, int) or isinstance(priority, bool) or not -32768 <= priority <= 32767:
        raise PgQueueError(f"priority is a whole number from -32768 to 32767, got {priority!r}")


def submit(pipe_id: int, request_id: int | None = None, priority: int = 100) -> int:
    """Create a pipe job (a request for one pipeline; the next free request id by default); its id."""
    _check_priority(priority)
    with labs.connect(POC) as conn:
        if request_id is None:
            request_id = conn.execute(_q()["next_request_id"]).fetchone()[0]
        params = {"request_id": request_id, "pipe_id": pipe_id, "priority": priority}
        try:
            return conn.execute(_q()["submit"], params).fetchone()[0]
        except psycopg.errors.RaiseException as exc:
            raise PgQueueError(exc.diag.message_primary) from None
        except psycopg.errors.ForeignKeyViolation:
            raise PgQueueError(f"no pipeline {pipe_id!r}") from None


def set_priority(pipe_job_id: int, priority: int) -> int:
    """Change a pipe job's priority (and its waiting jobs'); how many waiting jobs changed."""
    _check_priority(priority)
    with labs.connect(POC) as conn:
        try:
            params = {"pipe_job_id": pipe_job_id, "priority": priority}
            return conn.execute(_q()["set_priority"], params).fetchone()[0]
        except psycopg.errors.RaiseException as exc:
            raise PgQueueError(exc.diag.message_primary) from None


def jobs() -> pd.DataFrame:
    """Every job of the single-call lab, oldest first."""
    import pandas as pd

    return pd.read_sql(_q()["jobs"], labs.engine(POC))


def claims() -> pd.DataFrame:
    """Every claim: which jobs one find_job call handed out together, to whom, for which pipe job."""
    import pandas as pd

    return pd.read_sql(_q()["claims"], labs.engine(POC))


def pipe_jobs() -> pd.DataFrame:
    """Every pipe job with its pipeline, order, priority, start, end and number of jobs."""
    import pandas as pd

    return pd.read_sql(_q()["pipe_jobs"], labs.engine(POC))


def job_counts() -> dict[str, int]:
    """Jobs waiting, running and finished; pipe jobs finished and in all."""
    with labs.connect(POC) as conn:
        cur = conn.execute(_q()["job_counts"])
        return dict(zip([c.name for c in cur.description], cur.fetchone(), strict=True))
