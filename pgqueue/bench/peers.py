"""The production queues bench sets beside the kit's designs: pgqueuer and procrastinate, by their own APIs.

Each runs as its users run it: its own schema installer, its own bulk enqueue, its own worker on
a no-op handler, one worker per OS process. Both are optional (requirements-bench.txt), so they
are imported only inside the functions here: the kit imports without them.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.metadata
import logging
import time
from dataclasses import dataclass
from datetime import timedelta

import psycopg

from pgqueue import queries

PGQUEUER_VERSION = "1.6.0"
PROCRASTINATE_VERSION = "3.10.0"
INSTALL = "pip install -r requirements-bench.txt"
TASK = "noop"  # the entrypoint (pgqueuer) or task (procrastinate) name of the no-op job
# how long a pgqueuer worker whose dequeue came up empty waits for a NOTIFY before it looks again:
# drain mode asks "queue empty?" only once the worker's own jobs are done, so one that found the
# queue empty while its last jobs still ran could idle the whole wait (default 30 s) if no NOTIFY
# of a change to the queue table woke it
PGQUEUER_IDLE_WAIT = timedelta(seconds=0.2)

# what each peer needs installed: distribution and the release the table names (None: any)
_NEEDS = {
    "pgqueuer": (("pgqueuer", PGQUEUER_VERSION), ("asyncpg", None)),
    "procrastinate": (("procrastinate", PROCRASTINATE_VERSION),),
}
_MODULES = {
    "pgqueuer": ("asyncpg", "pgqueuer", "pgqueuer.types"),
    "procrastinate": ("procrastinate",),
}


@dataclass(frozen=True)
class Peer:
    """One production queue at one batch size, as bench runs it."""

    name: str  # as the table shows it, e.g. "pgqueuer 1.6.0, batch of 10"
    package: str  # the distribution name, e.g. "pgqueuer"
    batch: int  # jobs a worker takes per dequeue (procrastinate: 1, it takes one at a time)


PEERS = (
    Peer(f"pgqueuer {PGQUEUER_VERSION}, batch of 10", "pgqueuer", 10),
    Peer(f"pgqueuer {PGQUEUER_VERSION}, batch of 50", "pgqueuer", 50),
    Peer(f"procrastinate {PROCRASTINATE_VERSION}", "procrastinate", 1),
)


def missing(peer: Peer) -> str | None:
    """None when the peer can run here, else one line naming what is missing."""
    for dist, wanted in _NEEDS[peer.package]:
        try:
            have = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return f"{dist} is not installed: {INSTALL}"
        if wanted and have != wanted:
            # another release may differ in API and in speed, and the table names this one
            return f"{dist} {have} is installed, bench measures {wanted}: {INSTALL}"
    # imported here, not only found: a worker process that asks before it is released pays no
    # import in the timed run (pgqueuer's takes about 0.3 s, pydantic and all)
    for module in _MODULES[peer.package]:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            return f"{module} cannot be imported ({exc}): {INSTALL}"
    return None


def prepare(peer: Peer, dsn: str, jobs: int) -> None:
    """In an empty database at `dsn`: install the peer's schema and enqueue `jobs` no-op jobs, in bulk."""
    _quiet()
    if peer.package == "pgqueuer":
        asyncio.run(_pgqueuer_prepare(dsn, jobs))
    else:
        asyncio.run(_procrastinate_prepare(dsn, jobs))


def remaining(peer: Peer, dsn: str) -> int:
    """How many of the enqueued jobs are not done yet (queued or running), from the peer's own tables."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(queries.load("clients/bench.sql")[f"{peer.package}_remaining"]).fetchone()[0]


def work(peer: Peer, dsn: str, stop_at: float) -> int:
    """Run the peer's worker here until its queue is empty or stop_at (monotonic) passes: jobs it ran."""
    _quiet()
    if peer.package == "pgqueuer":
        return _pgqueuer_run(_pgqueuer_work(peer, dsn, stop_at))
    return asyncio.run(_procrastinate_work(dsn, stop_at))


def _quiet() -> None:
    # procrastinate logs two INFO lines per job, which bench's table has no use for; pgqueuer logs
    # per job only at DEBUG, but its INFO lines (a retry, a signal) are no more wanted here
    for name in ("pgqueuer", "procrastinate"):
        logging.getLogger(name).setLevel(logging.WARNING)


# pgqueuer: QueueManager over Queries over AsyncpgDriver (one asyncpg connection, its fastest)


async def _pgqueuer_prepare(dsn: str, jobs: int) -> None:
    import asyncpg
    from pgqueuer import AsyncpgDriver, Queries

    conn = await asyncpg.connect(dsn)
    try:
        queries = Queries(AsyncpgDriver(conn))
        await queries.install()  # what `pgq install` runs
        if jobs:
            # lists enqueue every job in one statement (unnest of arrays)
            await queries.enqueue([TASK] * jobs, [None] * jobs, [0] * jobs)
    finally:
        await conn.close()


def _pgqueuer_run(coro) -> int:
    # on the event loop `pgq run` uses (uvloop where installed, a pgqueuer dependency on POSIX)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


async def _pgqueuer_work(peer: Peer, dsn: str, stop_at: float) -> int:
    import asyncpg
    from pgqueuer import AsyncpgDriver, Queries, QueueManager
    from pgqueuer.types import QueueExecutionMode

    done = 0
    conn = await asyncpg.connect(dsn)
    try:
        manager = QueueManager(Queries(AsyncpgDriver(conn)))

        @manager.entrypoint(TASK, accepts_context=False)
        async def noop(job) -> None:
            nonlocal done
            done += 1

        # the deadline sets the manager's own shutdown event: it takes no new batch, lets the
        # jobs it holds finish and flushes their log, then run() returns
        later = asyncio.get_running_loop().call_later(
            max(0.0, stop_at - time.monotonic()), manager.shutdown.set
        )
        try:
            # concurrency per process: pgqueuer's default, no cap (max_concurrent_tasks=None):
            # every job of each batch of `peer.batch` starts at once as an asyncio task, in one
            # event loop on one connection; drain mode returns once no job is queued and this
            # worker's own jobs are done (jobs other workers hold are theirs to finish)
            await manager.run(
                batch_size=peer.batch,
                mode=QueueExecutionMode.drain,
                dequeue_timeout=PGQUEUER_IDLE_WAIT,
            )
        finally:
            later.cancel()
    finally:
        await conn.close()
    return done


# procrastinate: App over PsycopgConnector (a psycopg_pool.AsyncConnectionPool)


def _procrastinate_app(dsn: str):
    from procrastinate import App, PsycopgConnector

    return App(connector=PsycopgConnector(conninfo=dsn))


async def _procrastinate_prepare(dsn: str, jobs: int) -> None:
    app = _procrastinate_app(dsn)

    @app.task(name=TASK)
    async def noop() -> None:
        pass

    async with app.open_async():
        await app.schema_manager.apply_schema_async()  # what `procrastinate schema --apply` runs
        if jobs:
            # one statement for all the jobs (procrastinate_defer_jobs_v1 over arrays)
            await noop.batch_defer_async(*({} for _ in range(jobs)))


async def _procrastinate_work(dsn: str, stop_at: float) -> int:
    app = _procrastinate_app(dsn)
    done = 0

    @app.task(name=TASK)
    async def noop() -> None:
        nonlocal done
        done += 1

    async with app.open_async():
        # concurrency per process: 1, procrastinate's default (one job fetched, run and finished
        # at a time); wait=False: the worker stops by itself at its first fetch that finds no job;
        # finished jobs stay in the table with their status (delete_jobs="never", its default)
        run = app.run_worker_async(wait=False, concurrency=1, install_signal_handlers=False)
        # at the deadline the worker is cancelled, which procrastinate treats as a stop: it
        # finishes the job it holds and unregisters, then re-raises
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(run, max(0.0, stop_at - time.monotonic()))
    return done
