"""The notify/listen worker (POC 1): LISTEN on its own channel, beat, react to the one answer."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

from pgqueue import labs, options, queries
from pgqueue.errors import PgQueueError
from pgqueue.events import EventLog
from pgqueue.heartbeats import Identity, send_heartbeat
from pgqueue.worker_base import WorkerBase

if TYPE_CHECKING:  # imported where used: workers start without them
    import pandas as pd

POC = "notify-listen"
KILL = "kill"
NO_JOB = "No job found"


def _q() -> queries.Queries:
    return queries.load("clients/notify_listen.sql")


@dataclass(frozen=True)
class Options:
    """How a worker waits and works (the original's values are the defaults)."""

    timeout: float = field(default=3.0, metadata={"help": "seconds to wait for the answer to a beat"})
    idle: float = field(default=1.0, metadata={"help": "seconds to pause after 'No job found'"})
    recover: float = field(default=5.0, metadata={"help": "seconds to pause after no answer, or several"})
    work: tuple[float, float] = field(default=(0.0, 1.0), metadata={"help": "simulated work, seconds"})
    serializable: bool = field(
        default=True, metadata={"help": "beat SERIALIZABLE: the original's guard against two owners"}
    )
    retries: int = field(default=20, metadata={"help": "serialization failures retried per beat"})

    def __post_init__(self) -> None:
        options.check_seconds(self, "timeout", "idle", "recover", "work")


def listen(conn: psycopg.Connection, who: Identity) -> None:
    """LISTEN on the process's own channel (its name quoted as an identifier, never formatted)."""
    conn.execute(sql.SQL(_q()["listen"]).format(channel=sql.Identifier(who.channel)))


def next_payload(who: Identity, job: dict) -> dict:
    """What a step hands to the next: a short description, and the chain of payloads so far."""
    return {
        "description": f"{who.name} {who.version} handled job {job['job_id']}",
        "parents": [job["job_payload"]],
    }


class Worker(WorkerBase):
    """One notify/listen worker; `run()` loops until killed (kill switch) or `stop` is set."""

    poc = POC

    def __init__(self, who: Identity, options: Options | None = None, log: EventLog | None = None):
        super().__init__(who, options or Options(), log)

    def _connect(self) -> psycopg.Connection:
        conn = super()._connect()
        if self.options.serializable:
            conn.isolation_level = psycopg.IsolationLevel.SERIALIZABLE
        return conn

    def heartbeat(self, conn: psycopg.Connection) -> None:
        """Beat in its own transaction; a serialization failure means another worker won: retry."""
        for attempt in range(self.options.retries + 1):
            try:
                with conn.transaction():
                    send_heartbeat(conn, self.who)
                return
            except psycopg.errors.SerializationFailure:
                self._event("retry", f"serialization failure {attempt + 1}: another worker won the race")
        raise PgQueueError(f"{self.who}: heartbeat failed {self.options.retries + 1} times in a row")

    def answers(self, conn: psycopg.Connection) -> list[str]:
        """Beat, then wait up to `timeout` for the answers on this worker's channel."""
        stale = [n.payload for n in conn.notifies(timeout=0)]
        if stale:
            self._event("dropped", f"{len(stale)} answer(s) left from an earlier heartbeat")
        self.heartbeat(conn)
        got = [n.payload for n in conn.notifies(timeout=self.options.timeout, stop_after=1)]
        # everything one commit sends arrives together: anything else is already here
        return got + [n.payload for n in conn.notifies(timeout=0)]

    def handle_job(self, conn: psycopg.Connection, job: dict) -> None:
        """Work on the job, then hand over to the next process (or record why that failed)."""
        self._event("SUCCESS", f"job {job['job_id']} payload {json.dumps(job['job_payload'])}")
        if self.stop.wait(random.uniform(*self.options.work)):
            return
        try:
            new_id = conn.execute(
                _q()["create_job"],
                {"job_id": job["job_id"], "payload": psycopg.types.json.Jsonb(next_payload(self.who, job))},
            ).fetchone()[0]
        except psycopg.errors.RaiseException as exc:
            message = exc.diag.message_primary or str(exc)
            conn.execute(_q()["record_job_failure"], {"job_id": job["job_id"], "message": message})
            self._event("failed", message)
            return
        self._event("done", f"job {job['job_id']}" + (f" -> job {new_id}" if new_id else ", end of pipeline"))

    def run(self) -> str:
        """Loop until killed or stopped; returns why it ended: 'kill' or 'stopped'."""
        with self._connect() as conn:
            listen(conn, self.who)
            self._event("start", f"{self.who} listening on {self.who.channel}")
            while not self.stop.is_set():
                answers = self.answers(conn)
                if len(answers) != 1:
                    what = "no answer" if not answers else f"{len(answers)} answers"
                    self._event("error", f"{what} within {self.options.timeout:g} s; starting over")
                    self.stop.wait(self.options.recover)
                elif answers[0] == KILL:
                    self._event("kill", "kill switch set: exiting")
                    return "kill"
                elif answers[0] == NO_JOB:
                    self._event("idle", NO_JOB)
                    self.stop.wait(self.options.idle)
                else:
                    self.handle_job(conn, json.loads(answers[0]))
        self._event("stop", "stopped")
        return "stopped"


def submit(
    pipe_id: int, request_id: int | None = None, payload: dict | None = None, creator: str = "TheWebsite"
) -> int:
    """Create the first job of a pipeline for a request (the next free one by default); the job id."""
    with labs.connect(POC) as conn:
        if request_id is None:
            request_id = conn.execute(_q()["next_request_id"]).fetchone()[0]
        payload = payload or {"description": f"request {request_id}", "parents": []}
        params = {
            "request_id": request_id,
            "pipe_id": pipe_id,
            "creator": creator,
            "payload": psycopg.types.json.Jsonb(payload),
        }
        try:
            return conn.execute(_q()["create_first_job"], params).fetchone()[0]
        except psycopg.errors.RaiseException as exc:
            raise PgQueueError(exc.diag.message_primary) from None


def jobs() -> pd.DataFrame:
    """Every job of the notify/listen lab, oldest first."""
    import pandas as pd

    return pd.read_sql(_q()["jobs"], labs.engine(POC))


def job_counts() -> dict[str, int]:
    """How many jobs wait, run, finished, and how many failures were recorded."""
    with labs.connect(POC) as conn:
        cur = conn.execute(_q()["job_counts"])
        return dict(zip([c.name for c in cur.description], cur.fetchone(), strict=True))
