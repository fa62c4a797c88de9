"""Lesson 13's experiments: many workers on one server, a pool in front, and what the pool breaks."""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

from pgqueue import chaos, fleet, hardened, labs, pooler, queries, server
from pgqueue.check.core import Verdict, written
from pgqueue.errors import PgQueueError
from pgqueue.wait import Timeout, until

if TYPE_CHECKING:
    import pandas as pd

POC = hardened.POC
KEY = 4242  # the advisory lock the experiments take
CHANNEL = "pgqueue_scaling_demo"


def _q() -> queries.Queries:
    return queries.load("clients/pooler.sql")


def _lab_connections(conn: psycopg.Connection) -> dict[str, int]:
    """The lab's client connections by application_name, this one left out."""
    rows = conn.execute(_q()["connections_by_application"], {"dbname": labs.database(POC)}).fetchall()
    counted = dict(rows)
    mine = conn.info.parameter_status("application_name") or ""
    counted[mine] = counted.get(mine, 1) - 1
    return {name: n for name, n in counted.items() if n > 0}


def _every_process(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """Every process of the example pipelines."""
    pipes = {"pipe_ids": list(chaos.REQUEST)}
    return [tuple(row) for row in conn.execute(labs.step(POC, "find_job").lesson["chaos_processes"], pipes)]


# --- 1. one connection (or two) per worker ---------------------------------------------------


@dataclass(frozen=True)
class Connections:
    """What a fleet of idle hardened workers costs the server in connections, and what it allows."""

    workers: int
    connections: int  # the workers' client connections to the lab's database
    max_connections: int
    reserved: int  # superuser_reserved_connections: not for workers
    changes_on: str  # pg_settings.context of max_connections: 'postmaster', a restart

    @property
    def per_worker(self) -> float:
        """Connections per idle worker."""
        return self.connections / self.workers

    @property
    def room_for(self) -> int:
        """How many such workers the server could take, if nothing else connected."""
        return int((self.max_connections - self.reserved) / self.per_worker)

    def __str__(self) -> str:
        return (
            f"{self.workers} idle workers hold {self.connections} connections ({self.per_worker:g} each); "
            f"max_connections {self.max_connections} (context {self.changes_on!r}: set at server start), "
            f"{self.reserved} reserved: room for about {self.room_for} such workers"
        )


def idle_workers(workers: int = 6, *, poll: float = 0.5, timeout: float = 30.0) -> Connections:
    """Start `workers` hardened worker processes on the example, count their connections while idle."""
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= 50:
        raise PgQueueError(f"workers is a whole number from 1 to 50, got {workers!r}")
    labs.reset(POC)
    with labs.connect(POC) as conn, fleet.Fleet(POC) as crew:
        conn.execute(labs.step(POC, "pipelines").example_sql)  # the pipelines, and no job: all stay idle
        started = crew.start("first_process", "1.9.2", workers, mode="process",
                             worker_options=hardened.Options(poll=poll))  # fmt: skip
        uuids = [m.who.uuid for m in started]
        until(
            lambda: conn.execute(_q()["beaten"], {"uuids": uuids}).fetchone()[0] == workers,
            timeout,
            f"{workers} workers asking for work",
        )
        counted = sum(_lab_connections(conn).values())
        limit, reserved = conn.execute(_q()["max_connections"]).fetchone()
        context = conn.execute(_q()["max_connections_context"]).fetchone()[0]
        crew.stop(timeout=10.0)
    return Connections(workers, counted, limit, reserved, context)


# --- 2. a pool: many clients, few server connections -----------------------------------------


@dataclass(frozen=True)
class Collapse:
    """Clients of a transaction-mode pool, and the server connections that served them."""

    clients: int
    pool_size: int
    in_server_at_once: int  # transactions inside the server while every client was in one
    backends_seen: int  # distinct server processes the clients' transactions ran on
    server_connections: int  # the lab's client connections on the server meanwhile
    finished: int  # transactions that ended (every client's, once let go)

    def __str__(self) -> str:
        return (
            f"{self.clients} clients began a transaction at once through a pool of {self.pool_size}: "
            f"{self.in_server_at_once} were inside the server, the rest queued in PgBouncer; the server "
            f"counted {self.server_connections} connections to the lab; all {self.finished} finished, "
            f"on {self.backends_seen} server processes"
        )


def pool_collapse(clients: int = 12, pool_size: int = 2, *, timeout: float = 30.0) -> Collapse:
    """`clients` connections through a pool of `pool_size`, each in a transaction at the same moment.

    Each transaction waits for a lock the watcher holds, so they overlap for certain: the watcher
    counts them inside the server, then lets them all go and counts how many finished.
    """
    if isinstance(clients, bool) or not isinstance(clients, int) or not 1 <= clients <= 200:
        raise PgQueueError(f"clients is a whole number from 1 to 200, got {clients!r}")
    labs.require_set_up(POC)
    q, db = _q(), labs.database(POC)
    with pooler.start(pool_size) as pool, labs.connect(POC) as watch:
        conns = [pool.connect(db) for _ in range(clients)]
        seen: set[int] = set()
        finished: list[int] = []
        try:
            watch.execute(q["session_lock"], {"key": KEY})  # nobody passes until the count is taken

            def one(i: int) -> None:
                with conns[i].transaction():
                    conns[i].execute(q["shared_xact_lock"], {"key": KEY})
                    seen.add(conns[i].execute(q["backend"]).fetchone()[0])
                finished.append(i)

            threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(clients)]
            for t in threads:
                t.start()
            inside = min(clients, pool_size)
            until(
                lambda: watch.execute(q["lock_waiters"], {"key": KEY}).fetchone()[0] >= inside,
                timeout,
                f"{inside} transactions waiting inside the server",
            )
            at_once = watch.execute(q["lock_waiters"], {"key": KEY}).fetchone()[0]
            counted = sum(_lab_connections(watch).values())
            watch.execute(q["session_unlock"], {"key": KEY})
            until(lambda: len(finished) == clients, timeout, f"all {clients} transactions finishing")
        finally:
            for c in conns:
                c.close()
    return Collapse(clients, pool_size, at_once, len(seen), counted, len(finished))


# --- 3. what a transaction-mode pool breaks ---------------------------------------------------


@dataclass(frozen=True)
class Broken:
    """Session features through a pool of one server connection, against the same on direct connections."""

    listening_seen_by_other: list[str]  # channels client B's session listens on, after client A's LISTEN
    heard_through_pool: list[str]  # what client A heard of a NOTIFY on its channel
    heard_direct: list[str]  # what a direct listener heard of the same NOTIFY
    other_got_session_lock: bool  # client B took the advisory lock client A holds
    direct_got_session_lock: bool  # a direct connection took it
    lock_held_by: int | None  # the server process holding A's lock while A sits idle
    pool_backend: int  # the pool's one server process
    xact_lock_excludes: bool  # inside transactions (pool of two), B could not take A's lock
    prepared_error: str  # psycopg's automatic prepared statement, on another server connection
    unprepared_ok: bool  # the same with prepare_threshold=None

    def table(self) -> pd.DataFrame:
        """One row per session feature: what happened through the pool, and on direct connections."""
        import pandas as pd

        rows = [
            ("LISTEN, then a NOTIFY", f"A heard {self.heard_through_pool}; B's session listens on "
             f"{self.listening_seen_by_other}", f"the listener heard {self.heard_direct}"),
            ("session-level advisory lock held by A", f"B took it too: {self.other_got_session_lock} "
             f"(server process {self.lock_held_by} holds it, the pool's {self.pool_backend})",
             f"another connection took it: {self.direct_got_session_lock}"),
            ("transaction-level lock held by A",
             f"B, in its own transaction, was kept out: {self.xact_lock_excludes}", "kept out, as always"),
            ("psycopg's prepared statement, next transaction", self.prepared_error or "ran",
             "ran (one server session)"),
            ("the same with prepare_threshold=None", "ran" if self.unprepared_ok else "failed", "ran"),
        ]  # fmt: skip
        return pd.DataFrame(rows, columns=["what", "through the pool (one server connection)", "direct"])


def session_features(*, heard_within: float = 1.0) -> Broken:
    """Show LISTEN, session-level advisory locks and prepared statements going wrong through a pool.

    A pool of one server connection makes the hand-over certain: client B's statements run on
    the server process client A's ran on a moment before. `heard_within` is how long a listener
    is given to hear a NOTIFY (the direct listener shows it arrives well within it).
    """
    number = isinstance(heard_within, (int, float)) and not isinstance(heard_within, bool)
    if not number or not 0 < heard_within <= 30:
        raise PgQueueError(f"heard_within is a number of seconds above 0, at most 30, got {heard_within!r}")
    labs.require_set_up(POC)
    q, db = _q(), labs.database(POC)
    listen_sql = queries.load("clients/notify_listen.sql")["listen"]
    listen = sql.SQL(listen_sql).format(channel=sql.Identifier(CHANNEL))
    with pooler.start(1) as pool, pool.connect(db) as a, pool.connect(db) as b, labs.connect(POC) as direct:
        a.execute(listen)
        seen = b.execute(q["listening_channels"]).fetchone()[0]
        direct.execute(listen)
        with labs.connect(POC) as sender:
            sender.execute(q["notify"], {"channel": CHANNEL, "payload": "wake up"})
        heard_direct = [n.payload for n in direct.notifies(timeout=heard_within, stop_after=1)]
        heard_pool = [n.payload for n in a.notifies(timeout=heard_within, stop_after=1)]
        pool_backend = a.execute(q["backend"]).fetchone()[0]
        a.execute(q["session_lock"], {"key": KEY})
        other_got = b.execute(q["try_session_lock"], {"key": KEY}).fetchone()[0]
        direct_got = direct.execute(q["try_session_lock"], {"key": KEY}).fetchone()[0]
        holder = direct.execute(q["lock_holder"], {"key": KEY}).fetchone()
        if direct_got:
            direct.execute(q["session_unlock"], {"key": KEY})
    with pooler.start(2) as pool, pool.connect(db) as a, pool.connect(db) as b:
        with a.transaction():
            a.execute(q["xact_lock"], {"key": KEY})
            with b.transaction():
                excluded = not b.execute(q["try_xact_lock"], {"key": KEY}).fetchone()[0]
        prepared_error = _prepared_statement_lost(pool, db, prepare_threshold=5)
        unprepared_error = _prepared_statement_lost(pool, db, prepare_threshold=None)
    return Broken(
        listening_seen_by_other=list(seen),
        heard_through_pool=heard_pool,
        heard_direct=heard_direct,
        other_got_session_lock=other_got,
        direct_got_session_lock=direct_got,
        lock_held_by=holder[0] if holder else None,
        pool_backend=pool_backend,
        xact_lock_excludes=excluded,
        prepared_error=prepared_error,
        unprepared_ok=not unprepared_error,
    )


def session_level_calls(poc: str = POC) -> list[str]:
    """The lines of a lab's SQL steps that take a session-level advisory lock (a pool would break them)."""
    session_lock = re.compile(r"pg_(try_)?advisory_lock(_shared)?\s*\(", re.IGNORECASE)
    return [
        f"{step.key}: {line.strip()}"
        for step in labs.steps(poc)
        for line in step.sql.splitlines()
        if session_lock.search(line)
    ]


def _prepared_statement_lost(pool: pooler.Pooler, db: str, *, prepare_threshold: int | None) -> str:
    """PostgreSQL's words when a prepared query runs on the pool's other server connection, else ''.

    The query runs until psycopg prepares it, then again while another client holds the server
    connection it was prepared on.
    """
    q = _q()
    with pool.connect(db, prepare_threshold=prepare_threshold) as a, pool.connect(db) as b:
        for _ in range(6):  # psycopg prepares a query on the server at its sixth run (prepare_threshold=5)
            a.execute(q["the_same_query"], {"kind": "r"})
        with b.transaction():  # the pool hands back the server process a used last: b holds it now
            b.execute(q["backend"])
            try:
                a.execute(q["the_same_query"], {"kind": "r"})
            except psycopg.errors.InvalidSqlStatementName as exc:
                return exc.diag.message_primary or str(exc)
    return ""


# --- the exercise: a turn that a transaction-mode pool cannot break ---------------------------


def turn_through_pool(text: object, request_id: int = 7) -> Verdict:
    """Check the learner's statement that takes a request's turn, run by two clients of one pool.

    Each client runs it inside a transaction (with %(request_id)s). The first keeps its
    transaction open while the second runs it on the pool's other server connection: the second
    must wait, not go ahead; once the first commits, the second must go on; and once both have
    committed, no lock may be left on the server, where the pool would hand it to a stranger.
    """
    if isinstance(request_id, bool) or not isinstance(request_id, int) or request_id < 1:
        raise PgQueueError(f"request_id is a whole number, 1 or more, got {request_id!r}")
    verdict = Verdict("your turn through the pool")
    if written(text, verdict) is None:
        return verdict
    q, params = _q(), {"request_id": request_id}
    # a scratch copy of the lab with the example requests: the lesson's lab is not needed, nor touched
    with labs.scratch(POC, examples=True) as lab, pooler.start(2) as pool:
        db = lab.database
        with pool.connect(db) as a, pool.connect(db) as b, lab.connect() as watch:
            return _two_turns(verdict, text, params, q, db, a, b, watch)


def _two_turns(
    verdict: Verdict,
    text: str,
    params: dict,
    q: queries.Queries,
    db: str,
    a: psycopg.Connection,
    b: psycopg.Connection,
    watch: psycopg.Connection,
) -> Verdict:
    """The first client's turn held open while the second asks for its own; then what was left."""
    second: list[object] = []

    def run_second() -> None:
        try:
            with b.transaction():
                b.execute(q["local_lock_timeout"])
                b.execute(text, params)
            second.append("done")
        except psycopg.Error as exc:
            second.append(exc)

    try:
        with a.transaction():
            a.execute(text, params)
            racer = threading.Thread(target=run_second, daemon=True)
            racer.start()
            # through the pool, b's server process is the one of the lab waiting for any lock
            until(
                lambda: second or watch.execute(q["lock_waiters_in"], {"dbname": db}).fetchone()[0] > 0,
                10,
                "the second client finishing or waiting for a lock",
            )
            went_ahead = bool(second) and second[0] == "done"
    except psycopg.Error as exc:
        return verdict.refuse(f"PostgreSQL refused your statement: {exc.diag.message_primary or exc}")
    except Timeout:
        return verdict.refuse("the second client neither finished nor waited for a lock within 10 s")
    racer.join(10)
    held, _waiting = watch.execute(q["advisory_locks"]).fetchone()
    if not verdict.expect(
        not went_ahead,
        "while the first client's transaction was open, the second waited for its turn",
        "the second client went ahead while the first client's transaction was open: take a lock on "
        "the request (an advisory lock keyed by %(request_id)s)",
    ):
        return verdict
    failed = next((x for x in second if isinstance(x, psycopg.Error)), None)
    verdict.expect(
        second == ["done"],
        "once the first client committed, the second went on",
        f"the first client committed, yet the second still waited and gave up after 2 s ({_said(failed)}): "
        "the lock stayed with the pool's server connection, not with the transaction"
        if failed is not None
        else "the second client never finished after the first committed",
    )
    verdict.expect(
        held == 0,
        "no lock was left on the server once both had committed",
        f"{held} advisory lock(s) still held on the server after both clients committed: a session-level "
        "lock belongs to the server connection, which the pool hands to the next client; take one that "
        "ends with the transaction (pg_advisory_xact_lock)",
    )
    return verdict


def _said(exc: psycopg.Error | None) -> str:
    return (exc.diag.message_primary or str(exc)) if exc is not None else ""


# --- 4. the hardened workers through a pool ---------------------------------------------------


@dataclass(frozen=True)
class PooledRun:
    """The example run by hardened worker processes that connect through a pool."""

    workers: int
    pool_size: int
    pipe_jobs: int
    pipe_jobs_finished: int
    jobs_finished: int
    as_role: str  # the role the workers log in as (the lab's worker role)
    most_as_role: int  # the most connections to the lab the server counted for that role
    most_in_all: int  # the most it counted for every role (a worker's start-up checks use the owner's)
    seconds: float

    def __str__(self) -> str:
        return (
            f"{self.workers} hardened workers through a pool of {self.pool_size} finished "
            f"{self.pipe_jobs_finished} of {self.pipe_jobs} pipe jobs ({self.jobs_finished} jobs) in "
            f"{self.seconds:.1f} s; the server counted at most {self.most_as_role} connections to the lab "
            f"as {self.as_role} ({self.most_in_all} with the owner's, which each worker's start-up uses)"
        )


def hardened_through_pool(per_process: int = 2, pool_size: int = 3, *, timeout: float = 60.0) -> PooledRun:
    """Run the example with hardened worker processes that all connect through one pool; count.

    `per_process` workers of each process of the example, through a transaction-mode pool of
    `pool_size`; the server's count of connections to the lab is watched until every pipe job ends.
    """
    if isinstance(per_process, bool) or not isinstance(per_process, int) or not 1 <= per_process <= 10:
        raise PgQueueError(f"per_process is a whole number from 1 to 10, got {per_process!r}")
    labs.reset(POC, examples=True)
    role = hardened.worker_role()
    opts = hardened.Options(poll=0.5, work=(0.0, 0.05))
    with pooler.start(pool_size, users=[role] if role else []) as pool, labs.connect(POC) as watch:
        kinds = _every_process(watch)
        as_role = role or watch.info.user
        most = [0, 0]

        def done() -> bool:
            now = _lab_connections_by_role(watch)
            most[0] = max(most[0], now.get(as_role, 0))
            most[1] = max(most[1], sum(now.values()))
            counts = watch.execute(queries.load("clients/hardened.sql")["job_counts"]).fetchone()
            return counts[4] == counts[5]

        with fleet.Fleet(POC, env=pool.env()) as crew:
            began = time.monotonic()  # from the workers' start: the pool and the lab are ready
            crew.launch([(name, version, per_process) for name, version in kinds], mode="process",
                        worker_options=opts)  # fmt: skip
            until(done, timeout, "every pipe job of the example finishing", interval=0.1)
            seconds = time.monotonic() - began
            workers = len(crew.members())
            crew.stop(timeout=10.0)
        counts = watch.execute(queries.load("clients/hardened.sql")["job_counts"]).fetchone()
    return PooledRun(workers, pool_size, counts[5], counts[4], counts[2], as_role, most[0], most[1], seconds)


def _lab_connections_by_role(watch: psycopg.Connection) -> dict[str, int]:
    """The lab's client connections by role, this watcher left out.

    PgBouncer keeps a pool per database and role, each at most `pool_size`; the workers' start-up
    checks log in as the owner, so that role's pool holds connections for a while too.
    """
    rows = watch.execute(_q()["connections_by_role"], {"dbname": labs.database(POC)}).fetchall()
    counted = dict(rows)
    counted[watch.info.user] = counted.get(watch.info.user, 1) - 1
    return {role: n for role, n in counted.items() if n > 0}


def direct_server() -> str:
    """Which server the experiments run on, in one line."""
    return server.resolve().describe()
