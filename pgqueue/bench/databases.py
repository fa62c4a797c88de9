"""Where bench measures: a server of its own, its databases, and in each a queue of no-op jobs."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from unittest import mock

import psycopg
from psycopg import sql

from pgqueue import paths, queries, server
from pgqueue.errors import PgQueueError
from pgqueue.queues import labs
from pgqueue.server import embedded

# 0: run on the kit's own server (server.resolve()'s) with databases of its own, as on
# PGQUEUE_DSN's; the tests set it, and so measure on the server they already run
FRESH_ENV = "PGQUEUE_BENCH_FRESH"
REQUESTS_PER_FILL = 1000  # requests submitted per transaction when a queue is filled


def q() -> queries.Queries:
    """The bench's SQL (sql/clients/bench.sql)."""
    return queries.load("clients/bench.sql")


@contextlib.contextmanager
def own_server() -> Iterator[str]:
    """PGQUEUE_DSN's server, or a fresh embedded one in a private folder; the run's go with it, even failing.

    A fresh server keeps the learner's labs and their server's caches out of the numbers. Its
    settings are PostgreSQL's defaults (durable commits), as a queue that must not lose jobs needs.
    The bench's labs have names of their own, and templates: every throughput point starts from
    a fresh lab, copied rather than built again; they go with the run's other databases.
    """
    dsn = os.environ.get(server.DSN_ENV, "").strip()
    with labs.prefixed("bench_") as prefix, mock.patch.dict(os.environ, {labs.TEMPLATES_ENV: "1"}):
        if dsn or os.environ.get(FRESH_ENV) == "0":
            try:
                yield "PGQUEUE_DSN" if dsn else "the kit's server"
            finally:  # a run that fails leaves none of its databases or roles there either
                labs.drop_every(prefix)
            return
        folder = paths.private_folder(paths.home() / f"bench-{os.getpid()}")
        try:
            with mock.patch.dict(os.environ, {"PGQUEUE_HOME": str(folder)}):
                try:
                    yield "a fresh embedded server"
                finally:
                    embedded.stop()
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def fresh_database(name: str) -> str:
    """An empty database `name` (dropped first if it is there)."""
    kit = queries.load("kit/queries.sql")
    with server.connect() as admin:
        admin.execute(sql.SQL(kit["drop_database"]).format(db=sql.Identifier(name)))
        admin.execute(sql.SQL(kit["create_database"]).format(db=sql.Identifier(name)))
    return name


class Queue:
    """A design's lab with the bench's one-step pipeline of `bench_noop 1.0.0` jobs.

    For the claim cost, one pipe job holds every job (filled fast, in one statement); with
    `requests` (throughput, wake-up), each job is a request of its own, as a submit makes it.
    """

    names = ""  # the prefix of its statements' names in bench.sql

    def __init__(self, design: str, *, requests: bool = False) -> None:
        self.design, self.requests = design, requests
        labs.reset(design, examples=True)
        self.database = labs.database(design)
        with self.connect() as conn:
            self.pipe_id = conn.execute(q()["bench_pipeline"]).fetchone()[0]
            conn.execute(q()["bench_step"], {"pipe_id": self.pipe_id})
            if design != "notify-listen" and not requests:
                made = conn.execute(q()["bench_pipe_job"], {"pipe_id": self.pipe_id})
                self.pipe_job_id = made.fetchone()[0]

    def connect(self) -> psycopg.Connection:
        """A new connection to the queue's database."""
        return server.connect(self.database, application_name="pgqueue bench")

    def count(self, conn: psycopg.Connection, which: str) -> int:
        """The bench's jobs `waiting` (nobody holds them) or `finished`."""
        return conn.execute(q()[self.names + which]).fetchone()[0]

    def finished(self, queued: int) -> int:
        """How many of the `queued` jobs the database says are done (to check the workers' count)."""
        with self.connect() as conn:
            return self.count(conn, "finished")

    def add(self, conn: psycopg.Connection, jobs: int) -> None:
        """`jobs` more waiting jobs in one statement: in the one pipe job, or each a request of its own."""
        if self.design == "notify-listen":
            conn.execute(q()["fill_notify_listen"], {"pipe_id": self.pipe_id, "jobs": jobs})
        elif self.requests:
            # a chunk per transaction: the triggers take a lock per new request, and one statement
            # of 8,000 ran out of PostgreSQL's lock table (max_locks_per_transaction)
            for first in range(0, jobs, REQUESTS_PER_FILL):
                chunk = min(REQUESTS_PER_FILL, jobs - first)
                conn.execute(q()["fill_requests"], {"pipe_id": self.pipe_id, "jobs": chunk})
        else:
            params = {"pipe_id": self.pipe_id, "pipe_job_id": self.pipe_job_id, "jobs": jobs}
            conn.execute(q()["fill_pipe_job"], params)

    def fill(self, conn: psycopg.Connection, depth: int) -> None:
        """Add waiting jobs until `depth` wait, then refresh the planner's statistics, as autovacuum would."""
        if (missing := depth - self.count(conn, "waiting")) > 0:
            self.add(conn, missing)
        conn.execute(q()[self.names + "analyze"])

    def ready(self, jobs: int, runner: str) -> Queue:
        """This queue, filled with `jobs` waiting jobs and nothing else, for `runner`."""
        with self.connect() as conn:
            self.fill(conn, jobs)
            if (waiting := self.count(conn, "waiting")) != jobs:
                raise PgQueueError(f"{runner}: the queue holds {waiting} jobs, not {jobs}")
        return self


class Floor(Queue):
    """The floor: the least a queue in PostgreSQL can do per job, in a database of its own."""

    names = "floor_"

    def __init__(self, design: str = "floor", *, requests: bool = False) -> None:
        self.design = design
        self.database = fresh_database(labs.prefix() + "floor")
        with self.connect() as conn:
            conn.execute(q()["create_floor"])

    def add(self, conn: psycopg.Connection, jobs: int) -> None:
        """`jobs` more waiting rows, in one statement."""
        conn.execute(q()["fill_floor"], {"jobs": jobs})


def queue(design: str, *, requests: bool = False) -> Queue:
    """A fresh queue of `design` (a lab, or "floor")."""
    return (Floor if design == "floor" else Queue)(design, requests=requests)
