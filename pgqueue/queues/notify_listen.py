"""The notify/listen worker (POC 1): LISTEN on its own channel, beat, react to the one answer."""

from __future__ import annotations

import functools
import json
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psycopg

from pgqueue import queries
from pgqueue.queues import client, designs, labs, options
from pgqueue.queues.client import KILL, NO_JOB
from pgqueue.queues.events import EventLog
from pgqueue.queues.heartbeats import Identity, send_heartbeat
from pgqueue.queues.worker_base import KILLED, WorkerBase
from pgqueue.wait import Backoff

if TYPE_CHECKING:  # imported where used: workers start without them
    import pandas as pd

POC = "notify-listen"


_q = functools.partial(queries.load, "clients/notify_listen.sql")


@dataclass(frozen=True)
class Options(options.Checked):
    """How a worker waits and works (the original's values are the defaults)."""

    timeout: float = options.seconds(3.0, "seconds to wait for the answer to a beat")
    idle: float = options.seconds(1.0, "seconds to pause after 'No job found'")
    recover: float = options.seconds(5.0, "seconds to pause after no answer, or several")
    work: tuple[float, float] = options.work((0.0, 1.0), "simulated work, seconds")
    serializable: bool = options.flag(True, "beat SERIALIZABLE: the original's guard against two owners")
    retries: int = options.count(20, "serialization failures retried per beat", 0, 1000)
    give_up: float = options.seconds(300.0, "seconds without a database before the worker gives up")


def listen(conn: psycopg.Connection, who: Identity) -> None:
    """LISTEN on the process's own channel (its name quoted as an identifier, never formatted)."""
    designs.get(POC).client(conn).listen(who)


def next_payload(who: Identity, job: dict) -> dict:
    """What a step hands to the next: a short description, and the chain of payloads so far."""
    return {
        "description": f"{who.name} {who.version} handled job {job['job_id']}",
        "parents": [job["job_payload"]],
    }


class Worker(WorkerBase):
    """One notify/listen worker; `run()` serves until killed, stopped, reset or out of patience."""

    poc = POC
    Options = Options

    def __init__(self, who: Identity, options: Options | None = None, log: EventLog | None = None):
        super().__init__(who, options, log)
        self.unsendable = Backoff(1.0, 30.0)  # answers too large for NOTIFY: nothing to hurry for

    def _connect(self, *, start: bool = True) -> psycopg.Connection:
        conn = super()._connect(start=start)
        if self.options.serializable:
            conn.isolation_level = psycopg.IsolationLevel.SERIALIZABLE
        return conn

    def heartbeat(self, conn: psycopg.Connection) -> bool:
        """Beat in its own transaction; False if it did not go through (the loop pauses, then beats again).

        A serialization failure means another worker won the job: the beat is retried after a
        backoff, up to `retries` times. An answer NOTIFY cannot carry (a job row over its size
        limit) fails the whole beat: the worker says so and waits longer each time.
        """
        for attempt in range(self.options.retries + 1):
            try:
                with conn.transaction():
                    send_heartbeat(conn, self.who)
                self.retry.reset()
                self.unsendable.reset()
                return True
            except psycopg.errors.SerializationFailure:
                if attempt < self.options.retries:
                    self.pause_after_retry(
                        f"serialization failure {attempt + 1}: another worker won the race"
                    )
            except psycopg.errors.InvalidParameterValue as exc:
                wait = self.unsendable.next()
                self._event(
                    "error",
                    f"the answer to this heartbeat cannot be sent ({_message(exc)}); "
                    f"beating again in {wait:.1f} s",
                )
                self.stop.wait(wait)
                return False
        self._event(
            "error", f"heartbeat lost the race {self.options.retries + 1} time(s) in a row; beating again"
        )
        return False

    def answers(self, conn: psycopg.Connection) -> list[str] | None:
        """Beat, then wait up to `timeout` for the answers on this worker's channel (None: no beat)."""
        stale = [n.payload for n in conn.notifies(timeout=0)]
        if stale:
            self._event("dropped", f"{len(stale)} answer(s) left from an earlier heartbeat")
        if not self.heartbeat(conn):
            return None
        got = [n.payload for n in conn.notifies(timeout=self.options.timeout, stop_after=1)]
        # everything one commit sends arrives together: anything else is already here
        return got + [n.payload for n in conn.notifies(timeout=0)]

    def handle_job(self, conn: psycopg.Connection, job: dict) -> None:
        """Work on the job, then hand over to the next process (or record why that failed)."""
        self.take([job["job_id"]])
        self._event("SUCCESS", f"job {job['job_id']} payload {json.dumps(job['job_payload'])}")
        if self.work(random.uniform(*self.options.work), conn):
            self.complete(conn, lambda c, after_outage: self._hand_over(c, job, after_outage))

    def _hand_over(self, conn: psycopg.Connection, job: dict, after_outage: bool) -> None:
        c = self.client(conn)
        try:
            made = c.hand_over(self.who, [job["job_id"]], [next_payload(self.who, job)])
        except psycopg.errors.RaiseException as exc:
            message = _message(exc)
            if after_outage and "already finished" in message:
                self._event("done", f"job {job['job_id']} (handed over before the connection was lost)")
                return
            c.fail(self.who, [job["job_id"]], message)
            self._event("failed", message)
            return
        self._event("done", f"job {job['job_id']}" + (f" -> job {made[0]}" if made else ", end of pipeline"))

    def serve(self, conn: psycopg.Connection) -> str | None:
        """Listen, then beat and react to each answer until killed or stopped."""
        self.client(conn).listen(self.who)
        self.say_started(f"{self.who} listening on {self.who.channel}")
        while not self.stop.is_set():
            answers = self.answers(conn)
            if answers is None:
                continue  # the beat did not go through; heartbeat() has waited already
            if len(answers) != 1:
                what = "no answer" if not answers else f"{len(answers)} answers"
                self._event("error", f"{what} within {self.options.timeout:g} s; starting over")
                self.stop.wait(self.options.recover)
            elif answers[0] == KILL:
                return KILLED
            elif answers[0] == NO_JOB:
                self._event("idle", NO_JOB)
                self.stop.wait(self.options.idle)
            else:
                self.handle_job(conn, json.loads(answers[0]))
        return None


def _message(exc: psycopg.Error) -> str:
    return exc.diag.message_primary or str(exc)


def submit(
    pipe_id: int, request_id: int | None = None, payload: dict | None = None, creator: str = "TheWebsite"
) -> int:
    """Create the first job of a pipeline for a request (the next free one by default); the job id."""
    with client.connect(POC) as c:
        return c.submit(pipe_id, request_id, payload, creator)


def jobs() -> pd.DataFrame:
    """Every job of the notify/listen lab, oldest first."""
    return labs.frame(POC, _q()["jobs"])


def job_counts() -> dict[str, int]:
    """How many jobs wait, run, finished, and how many failures were recorded."""
    return labs.row(POC, _q()["job_counts"])
