"""Lesson 13's checker: the learner's turn for a request, taken by clients of one transaction-mode pool."""

from __future__ import annotations

import html
import secrets
import threading
from dataclasses import dataclass

import psycopg

from pgqueue import queries
from pgqueue.check.core import Verdict, checker, query_refused, said
from pgqueue.errors import PgQueueError
from pgqueue.queues import hardened
from pgqueue.server import pooler
from pgqueue.wait import Timeout, until


def _ids(ids: list[int]) -> str:
    return ", ".join(map(str, sorted(ids)))


def _q() -> queries.Queries:
    return queries.load("clients/pooler.sql")


NEIGHBOURS = 40  # the requests just above the held one that must go on at once: a key that buckets
# requests (a modulo, a division, a hash of few values) shares one with the held request
# settings PgBouncer itself sets on a server connection for the client it hands it to
POOL_SET = {"client_encoding", "DateStyle", "TimeZone", "IntervalStyle", "standard_conforming_strings",
            "application_name"}  # fmt: skip


def turn_through_pool(text: object, request_id: int | None = None) -> Verdict:
    """Check the learner's statement that takes a request's turn, run by clients of one pool.

    Each client runs it inside a transaction (with its %(request_id)s). The first takes request
    `request_id`'s turn (drawn anew when not given) and keeps its transaction open; meanwhile clients
    taking other requests' turns (its NEIGHBOURS above and two ids drawn anew) must each go on at
    once, and a second client taking the same request's turn, on the pool's other server
    connection, must wait; once the first commits, the second must go on; and once all have
    committed, no lock and no setting made for the session may be left on the server, where the
    pool would hand it to a stranger. Without PgBouncer nothing can be judged: the answer (an
    Unjudged) says so, and how to install it.
    """
    if request_id is None:
        request_id = 1 + secrets.randbelow(90_000)
    if isinstance(request_id, bool) or not isinstance(request_id, int) or request_id < 1:
        raise PgQueueError(f"request_id is a whole number, 1 or more, got {request_id!r}")
    if not pooler.installed():
        # judging needs clients of a real pool; a recorded verdict would be about other SQL
        missing = "PgBouncer is not installed here, and this check runs your SQL through a real pool: "
        missing += pooler.INSTALL
        return Unjudged("your turn through the pool", missing=missing)
    return _judged(text, request_id=request_id)


@checker("your turn through the pool", hardened.POC, examples=True, sends=("request_id",))
def _judged(verdict, lab, watch, text, poc, request_id):
    """The first client's turn held open while another request's and then its own are asked for, on a
    scratch copy of the lab with the example requests (`watch` connects directly, and sees the pool's
    server processes)."""
    q, db = _q(), lab.database
    # other requests: its near neighbours (a key that buckets requests, by a modulo up to
    # NEIGHBOURS, shares one of them) and two drawn anew; each must take its turn at once while the
    # first is held
    rng = secrets.SystemRandom()
    others = [request_id + k for k in range(1, NEIGHBOURS + 1)]
    others += rng.sample([n for n in range(1, 100_000) if n not in others and n != request_id], 2)
    rng.shuffle(others)

    def start(conn: psycopg.Connection, request_id: int) -> tuple[threading.Thread, list[object]]:
        # the statement run on `conn` in a thread: what it ended with ("done" or the error) is appended
        ended: list[object] = []

        def run() -> None:
            try:
                with conn.transaction():
                    conn.execute(q["local_lock_timeout"])
                    conn.execute(text, {"request_id": request_id})
                ended.append("done")
            except psycopg.Error as exc:
                ended.append(exc)

        racer = threading.Thread(target=run, daemon=True)
        racer.start()
        return racer, ended

    def waits(ended: list[object]) -> bool:
        # a client started a moment ago has not ended, and the lab has a session waiting for a lock
        # (through the pool, the client's server process is one of the lab's)
        until(
            lambda: ended or watch.execute(q["lock_waiters_in"], {"dbname": db}).fetchone()[0] > 0,
            10,
            "a client finishing or waiting for a lock",
        )
        return not ended

    def settings() -> dict[int, dict[str, str]]:
        # each server connection's session settings, read in two transactions open at once: with a
        # pool of two, they hold both server connections
        with a.transaction(), b.transaction():
            return dict(conn.execute(q["session_settings"]).fetchone() for conn in (a, b))

    with pooler.start(2) as pool, pool.connect(db) as a, pool.connect(db) as b, pool.connect(db) as c:
        before = settings()
        try:
            with a.transaction():
                a.execute(text, {"request_id": request_id})
                modes = {row[0] for row in watch.execute(q["advisory_modes"])}
                for other in others:
                    racer, stranger = start(c, other)
                    stranger_waited = waits(stranger)
                    racer.join(10)
                    if stranger_waited or stranger != ["done"]:
                        break
                racer, second = start(b, request_id)
                went_ahead = not waits(second) and second[0] == "done"
        except psycopg.Error as exc:
            return verdict.refuse(query_refused(text, exc))
        except Timeout:
            return verdict.refuse("a client neither finished nor waited for a lock within 10 s")
        racer.join(10)
        held, _waiting = watch.execute(q["advisory_locks"]).fetchone()  # once every client committed
        after = settings()
    leaked = sorted(
        {
            f"{name} = {value}"
            for pid, made in after.items()
            for name, value in made.items()
            if name not in POOL_SET and before.get(pid, {}).get(name) != value
        }
    )
    leak = (
        f"your statement left a setting made for the session on the pool's server connection ("
        f"{', '.join(leaked)}: SET, or set_config(..., false)), and the pool hands that connection to "
        "the next client, which then runs with it; make it for the transaction only (SET LOCAL, or "
        "set_config(..., true))"
        if leaked
        else ""
    )
    failed = next((x for x in stranger if isinstance(x, psycopg.Error) and not stranger_waited), None)
    if failed is not None:
        return verdict.refuse(query_refused(text, failed))
    verdict.expect(
        not stranger_waited,
        f"clients taking the turns of {len(others)} other requests ({_ids(others)}) each went on at once",
        f"a client taking the turn of request {other} waited while the first client held request "
        f"{request_id}'s (their ids are {abs(other - request_id)} apart: a constant, a modulo, a division "
        "or a hash of few values?): your lock is shared by other requests; key it by %(request_id)s itself",
    )
    if modes == {"ShareLock"}:  # seen in pg_locks while the first client held the turn
        how = (
            "it took the advisory lock shared (ShareLock in pg_locks), and a shared lock lets the second "
            "client in too: take it exclusive (pg_advisory_xact_lock)"
        )
    else:
        how = (
            "take a lock on the request (an advisory lock keyed by %(request_id)s) that waits until it "
            "is free"
        )
    if not verdict.expect(
        not went_ahead,
        f"while the first client's transaction was open, the second waited for the turn of {request_id}",
        f"the second client went ahead while the first client's transaction was open: {how}",
    ):
        return verdict
    failed = next((x for x in second if isinstance(x, psycopg.Error)), None)
    verdict.expect(
        second == ["done"],
        "once the first client committed, the second went on",
        f"the second client gave up ({said(failed)}): {leak}"
        if failed is not None and leak
        else f"the first client committed, yet the second still waited and gave up after 2 s "
        f"({said(failed)}): the lock stayed with the pool's server connection, not with the transaction"
        if failed is not None
        else "the second client never finished after the first committed",
    )
    verdict.expect(not leak, "no setting made for the session was left on the server either", leak)
    verdict.expect(
        held == 0,
        "no lock was left on the server once every client had committed",
        f"{held} advisory lock(s) still held on the server after every client committed: a session-level "
        "lock belongs to the server connection, which the pool hands to the next client; take one that "
        "ends with the transaction (pg_advisory_xact_lock)",
    )
    return verdict


@dataclass(repr=False)
class Unjudged(Verdict):
    """A check that could not run here: no check held or failed, and it says what it needs."""

    missing: str = ""

    def __str__(self) -> str:
        return f"{self.subject} was not judged: {self.missing}"

    __repr__ = __str__  # what a notebook shows of a cell's last value, outside JupyterLab too

    def _repr_html_(self) -> str:
        return f'<div style="border-left:4px solid #888;padding-left:8px">{html.escape(str(self))}</div>'
