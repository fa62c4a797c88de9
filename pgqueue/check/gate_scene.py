"""The gate judge's scene: its own requests, a finish held open while another runs, the locks each held."""

from __future__ import annotations

import contextlib
import secrets
from dataclasses import dataclass

import psycopg

from pgqueue import queries, wait
from pgqueue.check.callers import waits
from pgqueue.check.core import Call, Refused, said
from pgqueue.lab import races

# How long a forced schedule keeps the first transaction open while the second neither ends nor
# waits for a lock (a fix that loops on a try-lock, say): then the first commits regardless.
HOLD_OPEN = 3.0
# Once the second is seen waiting for a lock, the first stays open this long more: a wait that
# gives up on its own (a lock_timeout caught, say) ends while the first is still open. Below the
# checker's lock_timeout (gate_lock_timeout, 2.5 s), which would stop a right answer's wait.
KEEP_WAITING = 1.0
ORDER_1 = (1, 2)  # two pipelines of order 1: a request of both has two order-1 pipe jobs
ORDER_2 = 4  # the pipeline of order 2 they gate
ORDER_3_SCENE = (906, 907)  # the pipelines of order 2 and 3 the scene adds: a second order 2, and an order 3


def gate_queries() -> queries.Queries:
    return queries.load("clients/check.sql")


def race_queries() -> queries.Queries:
    return queries.load("clients/races.sql")


@dataclass(frozen=True)
class Lock:
    """An advisory lock a transaction held, by the key it was asked with."""

    key: tuple[int, ...]  # one bigint, or two integers
    shared: bool

    def __str__(self) -> str:
        key = str(self.key[0]) if len(self.key) == 1 else f"({', '.join(map(str, self.key))})"
        return f"{'shared ' if self.shared else ''}advisory lock {key}"


@dataclass(frozen=True)
class Forced:
    """How the second of two transactions fared while the first was held open."""

    waited: bool  # the second had not ended when the first committed
    locked: bool  # the second was seen waiting for a lock (not merely slow)
    error: str = ""  # what either failed with, in PostgreSQL's words
    value: object = None  # the first value the second statement returned
    first_locks: tuple[Lock, ...] = ()  # the advisory locks the first held while it was open
    second_locks: tuple[Lock, ...] = ()  # those the second held once its statement had run


class Scene:
    """Requests of the checker's own, with ids drawn at random and said in the verdict."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn
        self.used: set[int] = set()

    def request(self, pipes: list[int], request_id: int = 0) -> tuple[int, list[int]]:
        """A new request with one pipe job per pipeline in `pipes` (its id drawn, unless given and
        not used yet); its id and the pipe jobs' ids."""
        while request_id in self.used or request_id == 0:
            request_id = 1000 + secrets.randbelow(90_000)
        self.used.add(request_id)
        try:
            rows = self.conn.execute(
                gate_queries()["gate_request"], {"request_id": request_id, "pipes": pipes}
            )
            ids = [row[0] for row in rows]
        except psycopg.Error as exc:
            raise Refused(f"inserting the pipe jobs of request {request_id} failed: {said(exc)}") from exc
        if len(ids) != len(pipes):
            raise Refused(
                f"inserting {len(pipes)} pipe jobs for request {request_id} stored {len(ids)}: a BEFORE "
                "trigger must RETURN NEW (RETURN NULL skips the row)"
            )
        return request_id, ids

    def free_run(self, n: int) -> int:
        """A request id drawn so that it and the n - 1 ids above it are not used yet."""
        while True:
            start = 1000 + secrets.randbelow(90_000)
            if not self.used & set(range(start, start + n)):
                return start

    def triggers(self) -> tuple[int, int, int, int]:
        """How many triggers call the learner's function: in all, on INSERT, on UPDATE, once per statement."""
        return self.conn.execute(gate_queries()["gate_triggers"]).fetchone()

    def insert_locks(self) -> tuple[int, int, tuple[Lock, ...]] | None:
        """The advisory locks an insert of an order-1 pipe job takes (rolled back): request, pipe job, locks.

        None if the insert failed (the scene's own inserts say why).
        """
        try:
            with self.conn.transaction(force_rollback=True):
                request, (pipe_job,) = self.request([ORDER_1[0]])
                return request, pipe_job, locks_of(self.conn, self.conn.info.backend_pid)
        except Refused:
            return None

    def entries(self, pipe_job: int) -> int:
        """How many entry jobs a pipe job got: 1 once the gate let it start."""
        return self.conn.execute(race_queries()["entry_job_of"], {"pipe_job_id": pipe_job}).fetchone()[0]


def finish_of(pipe_job: int) -> tuple[str, dict]:
    # the UPDATE finish_pipe ends with, alone (not the client's finish): the gate's triggers fire on it
    return race_queries()["finish_pipe_job"], {"pipe_job_id": pipe_job}


def locks_of(conn: psycopg.Connection, pid: int) -> tuple[Lock, ...]:
    """The advisory locks backend `pid` holds, read on `conn`."""
    rows = conn.execute(gate_queries()["gate_advisory_locks_of"], {"pid": pid}).fetchall()
    return tuple(Lock(tuple(key), shared) for key, shared in rows)


def held_open(connect: races.Connect, first: tuple[str, dict], second: tuple[str, dict]) -> Forced:
    """`first` in a transaction held open while `second` runs in another, then both committed.

    The first commits once the second has ended, or has waited for a lock KEEP_WAITING s, or
    HOLD_OPEN has passed.
    """
    with connect() as a, connect() as b, connect() as watch:

        def run_second() -> tuple[object, tuple[Lock, ...]]:
            with b.transaction():
                cur = b.execute(*second)
                row = cur.fetchone() if cur.description else None
                return (row[0] if row else None), locks_of(b, b.info.backend_pid)

        call = None
        locked = False  # whether the second was seen waiting for a lock while the first was open
        try:
            with a.transaction():
                a.execute(*first)
                first_locks = locks_of(watch, a.info.backend_pid)
                call = Call(run_second)
                # still running and not waiting for a lock after HOLD_OPEN: the first commits anyway
                with contextlib.suppress(wait.Timeout):
                    locked = waits(
                        call, b, watch, HOLD_OPEN, "the second transaction ending or waiting for a lock"
                    )
                if locked:  # a wait that lasts: the second ends only once the first has committed
                    with contextlib.suppress(wait.Timeout):
                        wait.until(lambda: call.done, KEEP_WAITING, "the second giving up its wait")
                waited = not call.done
        except psycopg.Error as exc:
            if call is not None:
                call.join(HOLD_OPEN * 5)
            return Forced(False, False, f"the first failed: {said(exc)}")
        result = call.join(HOLD_OPEN * 5)
    if isinstance(result, BaseException):
        return Forced(waited, locked, said(result), first_locks=first_locks)
    return Forced(waited, locked, "", result[0], first_locks, result[1])


def held_open_beside(
    connect: races.Connect, first: tuple[str, dict], others: list[tuple[str, dict]]
) -> tuple[int | None, Forced]:
    """`first` in a transaction held open while each of `others` runs in turn in another, each
    committed as soon as it ends: the index of the first of them that did not end at once (it
    waits for a lock, or is slow past HOLD_OPEN; the first then commits, and it goes on), or that
    failed, with how it fared; None if every one ended at once.
    """
    with connect() as a, connect() as b, connect() as watch:

        def run(statement: tuple[str, dict]) -> tuple[Lock, ...]:
            with b.transaction():
                b.execute(*statement)
                return locks_of(b, b.info.backend_pid)

        try:
            with a.transaction():
                a.execute(*first)
                first_locks = locks_of(watch, a.info.backend_pid)
                for n, statement in enumerate(others):
                    call, locked = Call(lambda s=statement: run(s)), False
                    with contextlib.suppress(wait.Timeout):  # slow and not waiting: judged as waited
                        locked = waits(call, b, watch, HOLD_OPEN, "a finisher ending or waiting for a lock")
                    if not call.done:
                        break  # it waits: the first commits, and lets it go on
                    ended = call.join(0)
                    if isinstance(ended, BaseException):
                        return n, Forced(False, False, said(ended), first_locks=first_locks)
                else:
                    return None, Forced(False, False, first_locks=first_locks)
        except psycopg.Error as exc:
            return 0, Forced(False, False, f"the first failed: {said(exc)}")
        ended = call.join(HOLD_OPEN * 5)
    if isinstance(ended, BaseException):
        return n, Forced(True, locked, said(ended), first_locks=first_locks)
    return n, Forced(True, locked, "", None, first_locks, ended)
