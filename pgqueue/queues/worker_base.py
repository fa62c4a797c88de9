"""What every worker has, whatever its queue design: a graceful stop, reconnects with backoff, an ending.

A design's Worker supplies `serve(conn)`, its loop on one connection. This class runs that loop
and owns everything around it:
- `request_stop()` (Ctrl-C, SIGTERM, `Fleet.close()`): the job held is finished and handed over,
  then the worker leaves; `request_abort()` leaves at once and names the job it abandons;
- a lost or refused connection is not fatal: the worker reports it in one line, reconnects with
  capped exponential backoff (with jitter), and gives up only after `options.give_up` seconds;
- a lab reset (its database dropped) ends the worker in one line: its job went with the lab.
"""

from __future__ import annotations

import select
import threading
import time
from collections.abc import Callable

import psycopg

from pgqueue import queries, server
from pgqueue.errors import PgQueueError
from pgqueue.queues import client, designs, heartbeats, labs, pipelines
from pgqueue.queues.events import EventLog
from pgqueue.queues.heartbeats import Identity
from pgqueue.wait import Backoff

# How a worker's run ends (`run()` returns one of these).
STOPPED = "stopped"  # asked to stop; it finished the job it held
KILLED = "kill"  # its kill switch (the original's way)
RESET = "reset"  # its lab was rebuilt under it
GAVE_UP = "gave up"  # no database for longer than options.give_up
ABANDONED = "abandoned"  # stopped at once (request_abort); the job it held stays assigned
CLEAN = (STOPPED, KILLED, RESET)  # the endings a worker process exits 0 for


class LabReset(Exception):
    """The worker's lab was dropped (and maybe built again) under it."""


def _connection_lost(conn: psycopg.Connection) -> bool:
    """Whether the server closed this idle connection (without sending a query on it).

    A terminated session leaves a last message and the end of the stream on the socket; reading
    what is there tells a dead connection from a quiet one.
    """
    try:
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
        if readable:
            conn.pgconn.consume_input()
        return conn.pgconn.status == psycopg.pq.ConnStatus.BAD
    except (psycopg.OperationalError, ValueError, OSError):
        return True


def one_line(exc: BaseException) -> str:
    """The first line of an error's message (PostgreSQL's errors run over several)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


class WorkerBase:
    """The parts of a worker that do not depend on the queue design."""

    poc = ""  # set by each design's Worker, with its Options
    Options: type
    # lost job races, serialization failures, deadlocks: retried after these waits
    RETRY_BASE, RETRY_CAP = 0.05, 2.0
    # a lost server: reconnects after these waits
    RECONNECT_BASE, RECONNECT_CAP = 0.25, 15.0

    def __init__(self, who: Identity, options=None, log: EventLog | None = None) -> None:
        self.who = who
        self.options = options or self.Options()
        self.log = log or EventLog()
        self.stop = threading.Event()  # set: finish the job held, then leave
        self.abort = threading.Event()  # set: leave at once
        self.holding: list[int] = []  # the ids of the job(s) held right now
        self.retry = Backoff(self.RETRY_BASE, self.RETRY_CAP)
        # the step still to take for the job held when the connection was lost (run again first)
        self._unfinished: Callable[[psycopg.Connection, bool], None] | None = None
        self._lab_oid: int | None = None
        self._finished_since_stop: list[int] = []
        self._started = False

    # --- what a design supplies -----------------------------------------------------------

    def serve(self, conn: psycopg.Connection) -> str | None:
        """The design's loop on one connection: an ending, or None once `stop` is set."""
        raise NotImplementedError

    def serves_a_step(self, conn: psycopg.Connection) -> bool:
        """Whether any pipeline of the lab has a step for this worker's process."""
        return pipelines.serves_a_step(conn, self.who.name, self.who.version)

    def say_stopped(self, conn: psycopg.Connection) -> None:
        """Tell the lab this worker exits cleanly (its state reads `stopped`)."""
        heartbeats.mark_stopped(conn, self.who.uuid)

    # --- stopping ---------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Finish the job held (its step and hand-over), then leave; at once when idle."""
        self.stop.set()

    def request_abort(self) -> None:
        """Leave at once, abandoning the job held (it stays assigned, as after a crash)."""
        self.abort.set()
        self.stop.set()

    # --- helpers for a design's loop ------------------------------------------------------

    def _event(self, kind: str, detail: str = "") -> None:
        self.log.add(self.who.uuid, kind, detail)

    def _connect(self, *, start: bool = True, user: str | None = None) -> psycopg.Connection:
        # the name lets a lab reset count workers apart from notebooks (labs.WORKER_APPLICATION)
        name = f"{labs.WORKER_APPLICATION} {self.poc} {self.who}"[:63]
        return labs.connect(self.poc, application_name=name, start=start, user=user)

    def client(self, conn: psycopg.Connection) -> client.Client:
        """The design's client on `conn`."""
        return designs.get(self.poc).client(conn)

    def say_started(self, detail: str) -> None:
        """The 'start' event, once: the loop serves again after each reconnect."""
        if not self._started:
            self._started = True
            self._event("start", detail)

    def work(self, seconds: float, conn: psycopg.Connection) -> bool:
        """Simulate work; False if the worker was told to stop at once meanwhile.

        A lab reset during the work ends it (LabReset): the job went with the old database. A
        server that went away does not: the hand-over waits for it to come back.
        """
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self.abort.wait(min(left, 0.5)):
                return False
            if _connection_lost(conn) and self._lab_was_reset():
                raise LabReset
        return True

    def pause_after_retry(self, what: str) -> None:
        """Back off before trying again after a lost race, a serialization failure or a deadlock.

        Idle, a stop cuts the wait short; holding a job (its hand-over failing), only an abort
        does: a stop must not turn the retries that finish the job into a tight loop.
        """
        wait = self.retry.next()
        self._event("retry", f"{what}; again in {wait:.2f} s")
        (self.abort if self.holding else self.stop).wait(wait)

    def take(self, ids: list[int]) -> None:
        """Note the jobs now held (named if the worker is stopped at once)."""
        self.holding = list(ids)

    def complete(
        self,
        conn: psycopg.Connection,
        step: Callable[[psycopg.Connection, bool], None],
        after_outage: bool = False,
    ) -> None:
        """Take the step that finishes the jobs held (hand-over, fan-out, finish_pipe).

        A deadlock or serialization failure is retried with backoff. If the connection is lost,
        the step is kept and taken again first thing after reconnecting, with `after_outage`
        True: it may have committed before the connection died.
        """
        self._unfinished = step
        while True:
            try:
                step(conn, after_outage)
                break
            except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure) as exc:
                self.pause_after_retry(f"{type(exc).__name__} while finishing jobs {self.holding}")
        self._done()

    def _done(self) -> None:
        if self.stop.is_set():
            self._finished_since_stop += self.holding
        self._unfinished = None
        self.holding = []

    # --- the run ----------------------------------------------------------------------------

    def run(self) -> str:
        """Serve until killed, stopped, reset or out of patience; returns how it ended (STOPPED, ...)."""
        reconnect = Backoff(self.RECONNECT_BASE, self.RECONNECT_CAP)
        lost_at: float | None = None
        first = True
        while True:
            if self.abort.is_set():
                return self._end(ABANDONED)
            if self.stop.is_set() and self._unfinished is None:
                return self._end(STOPPED)
            try:
                with self._connect(start=first) as conn:
                    first = False
                    if lost_at is not None:
                        self._event(
                            "reconnected", f"after {time.monotonic() - lost_at:.1f} s without the database"
                        )
                        lost_at = None
                        reconnect.reset()
                    if not self._same_lab(conn):
                        return self._end(RESET)
                    if self._unfinished is not None:
                        self.complete(conn, self._unfinished, after_outage=True)
                    ending = self.serve(conn)
                    if ending is None:  # serve returns None once `stop` is set
                        ending = ABANDONED if self.abort.is_set() else STOPPED
                    return self._end(ending, conn)
            except LabReset:
                return self._end(RESET)
            except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure) as exc:
                # psycopg files these under OperationalError, but the server is there: retry
                first = False
                self.pause_after_retry(f"{type(exc).__name__}: {one_line(exc)}")
            except (psycopg.OperationalError, server.Unreachable) as exc:
                if first and isinstance(exc, server.Unreachable):
                    raise  # the very first connection: a wrong address is the user's to fix
                first = False
                if self.abort.is_set():
                    return self._end(ABANDONED)
                if self._lab_was_reset():
                    return self._end(RESET)
                lost_at = lost_at if lost_at is not None else time.monotonic()
                if time.monotonic() - lost_at > self.options.give_up:
                    return self._end(GAVE_UP)
                wait = reconnect.next()
                self._event("disconnected", f"{one_line(exc)}; reconnecting in {wait:.1f} s")
                # holding a job, only an abort cuts the wait short; idle, a stop does too
                (self.abort if self._unfinished is not None else self.stop).wait(wait)

    def _same_lab(self, conn: psycopg.Connection) -> bool:
        """On the first connection remember which database this is; afterwards, check it is still it."""
        oid = conn.execute(queries.load("kit/queries.sql")["this_database"]).fetchone()[0]
        if self._lab_oid is None:
            self._lab_oid = oid
            if not self.serves_a_step(conn):
                self._event(
                    "warning",
                    f"no pipeline of lab {self.poc} has a step for {self.who.name} {self.who.version} "
                    "(yet): this worker waits for one",
                )
            return True
        return oid == self._lab_oid

    def _lab_was_reset(self) -> bool:
        """Whether the lab's database was dropped (or dropped and made again) since the worker began."""
        if self._lab_oid is None:
            return False
        try:
            with server.connect(start=False) as admin:
                row = admin.execute(
                    queries.load("kit/queries.sql")["database_oid"], {"name": labs.database(self.poc)}
                ).fetchone()
        except (psycopg.OperationalError, PgQueueError):
            return False  # the server itself is away: an outage, not a reset
        return row is None or row[0] != self._lab_oid

    def _end(self, ending: str, conn: psycopg.Connection | None = None) -> str:
        held = f"job(s) {self.holding}" if self.holding else "no job"
        detail = {
            STOPPED: "stopped on request"
            + (f" after finishing job(s) {self._finished_since_stop}" if self._finished_since_stop else ""),
            KILLED: "kill switch set: exiting",
            RESET: f"lab {self.poc} was reset (its database was dropped): exiting"
            + (f"; {held} went with it" if self.holding else ""),
            GAVE_UP: f"no database for more than {self.options.give_up:g} s: giving up, holding {held}",
            ABANDONED: f"stopped at once: abandoned {held} (it stays assigned to this worker)",
        }[ending]
        if conn is not None and ending in (STOPPED, KILLED):
            self.say_stopped(conn)
        self._event(ending if ending != KILLED else "kill", detail)
        return ending
