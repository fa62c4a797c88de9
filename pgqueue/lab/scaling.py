"""Lesson 13's experiments: many workers on one server, a pool in front, and what the pool breaks."""

from __future__ import annotations

import inspect
import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

from pgqueue import paths, queries, server
from pgqueue.check.core import Verdict
from pgqueue.check.turn_through_pool import turn_through_pool
from pgqueue.errors import PgQueueError
from pgqueue.lab import chaos
from pgqueue.queues import client, fleet, hardened, labs
from pgqueue.server import pooler
from pgqueue.wait import until

if TYPE_CHECKING:
    import pandas as pd

POC = hardened.POC
KEY = 4242  # the advisory lock the experiments take
CHANNEL = "pgqueue_scaling_demo"
RECORD = paths.NOTEBOOKS_DIR / "data" / "scale-out.json"  # the run lesson 13 reads without PgBouncer
REQUIRE_ENV = "PGQUEUE_REQUIRE_TOOLS"  # CI sets it to 1: a lesson that would fall back fails instead


def _q() -> queries.Queries:
    return queries.load("clients/pooler.sql")


def _lab_connections(conn: psycopg.Connection, by: str = "application") -> dict[str, int]:
    """The lab's client connections by application_name (`by="role"`: by role), this one left out."""
    rows = conn.execute(_q()[f"connections_by_{by}"], {"dbname": labs.database(POC)}).fetchall()
    counted = dict(rows)
    mine = (conn.info.parameter_status("application_name") or "") if by == "application" else conn.info.user
    counted[mine] = counted.get(mine, 1) - 1
    return {name: n for name, n in counted.items() if n > 0}


def _whole(value: object, what: str, high: int) -> None:
    """A one-line error unless `value` is a whole number from 1 to `high`."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise PgQueueError(f"{what} is a whole number from 1 to {high}, got {value!r}")


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
    _whole(workers, "workers", 50)
    client.fresh_lab(POC)  # the pipelines, and no job: all stay idle
    with labs.connect(POC) as conn, fleet.Fleet(POC) as crew:
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
    _whole(clients, "clients", 200)
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
    outcomes: dict[str, int] = field(default_factory=dict)  # every attempt at a job, by how it ended

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
    _whole(per_process, "per_process", 10)
    labs.reset(POC, examples=True)
    role = hardened.worker_role()
    opts = hardened.Options(poll=0.5, work=(0.0, 0.05))
    with pooler.start(pool_size, users=[role] if role else []) as pool, labs.connect(POC) as watch:
        kinds = _every_process(watch)
        as_role = role or watch.info.user
        most = [0, 0]

        def done() -> bool:
            now = _lab_connections(watch, by="role")
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
        outcomes = dict(watch.execute(_q()["attempt_outcomes"]).fetchall())
    finished = (counts[5], counts[4], counts[2])
    return PooledRun(workers, pool_size, *finished, as_role, most[0], most[1], seconds, outcomes)


def direct_server() -> str:
    """Which server the experiments run on, in one line."""
    return server.resolve().describe()


# --- a recorded run, for a machine without PgBouncer ------------------------------------------

# The calls lesson 13 makes through PgBouncer, as record() runs them and a Recorded answers them.
RECORDED_CALLS: dict[str, dict] = {
    "pool_collapse": {"clients": 12, "pool_size": 2},
    "session_features": {},
    "hardened_through_pool": {"per_process": 2, "pool_size": 3},
    "turn_through_pool": {"text": "SELECT pg_advisory_lock(%(request_id)s)", "request_id": 7},
}
ANSWERED_IN = {  # the field of a Record that holds each call's answer
    "pool_collapse": "collapse",
    "session_features": "broken",
    "hardened_through_pool": "run",
    "turn_through_pool": "session_turn",
}


@dataclass(frozen=True)
class Record:
    """The lesson's PgBouncer experiments as one run recorded them, and what they ran on."""

    recorded_at: str  # UTC, ISO 8601
    machine: dict
    pgbouncer: str  # PgBouncer's version, e.g. "1.18.0"
    postgresql: str  # the server's version, e.g. "18.6"
    server: str  # "embedded" or "dsn"
    calls: dict[str, dict]  # each experiment's arguments
    collapse: Collapse
    broken: Broken
    run: PooledRun
    session_turn: Verdict

    def to_json(self) -> str:
        """The record as JSON (what `load` reads)."""
        return json.dumps(asdict(self), indent=1) + "\n"

    @classmethod
    def load(cls, path: str | os.PathLike = RECORD) -> Record:
        """A record saved by `record`, read into the experiments' own result types, or a one-line error."""
        try:
            data = json.loads(Path(path).read_text())
            kinds = {"collapse": Collapse, "broken": Broken, "run": PooledRun, "session_turn": Verdict}
            return cls(**{**data, **{key: kind(**data[key]) for key, kind in kinds.items()}})
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise PgQueueError(
                f"{path} is not a record of lesson 13's run ({type(exc).__name__}: {exc}): "
                "python -m pgqueue.lab.scaling record PATH writes one"
            ) from None

    @property
    def when(self) -> str:
        """The day it was recorded, e.g. '2025-06-01'."""
        return self.recorded_at[:10]


def record(path: str | os.PathLike = RECORD) -> Record:
    """Run the lesson's PgBouncer experiments as the lesson calls them and save them at `path`."""
    from pgqueue.bench.report import machine

    pooler.binary()  # a one-line error before anything runs
    labs.reset(POC, examples=True)
    answers = {field: getattr(Live, name)(**RECORDED_CALLS[name]) for name, field in ANSWERED_IN.items()}
    turn = answers["session_turn"]
    made = Record(
        recorded_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        machine=machine(),
        pgbouncer=".".join(map(str, pooler.version())),
        postgresql=server.version(),
        server=server.resolve().kind,
        calls=RECORDED_CALLS,
        **{**answers, "session_turn": Verdict(turn.subject, turn.held, turn.wrong)},
    )
    Path(path).write_text(made.to_json())
    return made


def _recorded(name: str) -> Callable[..., object]:
    """A method of Recorded: experiment `name` as the recording answers it, for its arguments only."""

    def answer(self: Recorded, *args: object, **kwargs: object) -> object:
        self._answer(name, *args, **kwargs)
        return getattr(self.record, ANSWERED_IN[name])

    answer.__doc__ = f"`{name}` as recorded, for the arguments it was recorded with only."
    return answer


class Live:
    """Lesson 13's PgBouncer experiments, run here: PgBouncer is installed."""

    pool_collapse = staticmethod(pool_collapse)
    session_features = staticmethod(session_features)
    hardened_through_pool = staticmethod(hardened_through_pool)
    turn_through_pool = staticmethod(turn_through_pool)

    def __init__(self) -> None:
        self.program = pooler.binary()
        self.release = pooler.version(self.program)

    def version(self) -> tuple[int, ...]:
        """PgBouncer's version."""
        return self.release

    def __str__(self) -> str:
        release = ".".join(map(str, self.release))
        return f"PgBouncer {release} is installed here ({self.program}): the pool's cells run live"


class Recorded:
    """Lesson 13's PgBouncer experiments as recorded, for a machine without PgBouncer; each says so."""

    # what a live run shows that the recording cannot, per experiment
    LIVE_ADDS = {
        "pool_collapse": "the same counts on your own server, through your own PgBouncer",
        "session_features": "your PgBouncer's version and how it treats prepared statements",
        "hardened_through_pool": "your machine's seconds and connection counts",
        "turn_through_pool": "the same check on your own pool",
    }
    pool_collapse = _recorded("pool_collapse")
    session_features = _recorded("session_features")
    hardened_through_pool = _recorded("hardened_through_pool")
    turn_through_pool = _recorded("turn_through_pool")

    def __init__(self, made: Record) -> None:
        self.record = made

    def version(self) -> tuple[int, ...]:
        """The recorded PgBouncer's version."""
        return tuple(int(n) for n in self.record.pgbouncer.split("."))

    def _answer(self, name: str, *args: object, **kwargs: object) -> None:
        """Say where the answer comes from; a one-line error if the recording never ran these arguments."""
        recorded = self.record.calls[name]
        live = inspect.signature(getattr(Live, name))
        given = live.bind(*args, **kwargs).arguments
        # a value left to be drawn (a default of None) is the one the recording drew
        asked = {k: recorded[k] if live.parameters[k].default is None else live.parameters[k].default
                 for k in recorded} | given  # fmt: skip
        if asked != recorded:
            shown = ", ".join(f"{k}={v!r}" for k, v in recorded.items())
            raise PgQueueError(
                f"the recorded run has {name}({shown}) only; for others, install PgBouncer: {pooler.INSTALL}"
            )
        r = self.record
        print(
            f"Recorded run ({r.when}, PgBouncer {r.pgbouncer}): PgBouncer is not installed here "
            f"({pooler.INSTALL}); a live run would show {self.LIVE_ADDS[name]}."
        )

    def __str__(self) -> str:
        r = self.record
        return (
            f"PgBouncer is not installed here ({pooler.INSTALL}): the pool's cells show the run recorded "
            f"on {r.when} with PgBouncer {r.pgbouncer} and PostgreSQL {r.postgresql} "
            f"({r.machine.get('cores')} cores, {r.machine.get('cpu')}); the exercise cannot be judged"
        )


def bouncer(path: str | os.PathLike = RECORD) -> Live | Recorded:
    """The lesson's PgBouncer experiments: live where PgBouncer is installed, else the run recorded at `path`.

    Under PGQUEUE_REQUIRE_TOOLS=1 (CI) a missing PgBouncer is a one-line error instead: there,
    the lesson must prove it runs live.
    """
    if pooler.installed():
        return Live()
    if os.environ.get(REQUIRE_ENV, "") == "1":
        raise PgQueueError(f"PgBouncer is not installed ({pooler.INSTALL}), and {REQUIRE_ENV}=1 asks for it")
    return Recorded(Record.load(path))


def main(argv: list[str]) -> int:
    """`python -m pgqueue.lab.scaling record [PATH]`: record the lesson's PgBouncer experiments."""
    if not argv or argv[0] != "record" or len(argv) > 2:
        print("usage: python -m pgqueue.lab.scaling record [PATH]  (default: notebooks/data/scale-out.json)")
        return 2
    target = Path(argv[1]) if len(argv) == 2 else RECORD
    try:
        made = record(target)
    except PgQueueError as exc:
        print(f"pgqueue.lab.scaling: {exc}", file=sys.stderr)
        return 1
    print(f"recorded lesson 13's run (PgBouncer {made.pgbouncer}, PostgreSQL {made.postgresql}) in {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
