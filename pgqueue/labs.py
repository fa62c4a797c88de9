"""Lab databases: one per queue design, created on first use, reset from sql/ up to a named step."""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

from pgqueue import queries, schema, server
from pgqueue.errors import PgQueueError
from pgqueue.paths import SQL_DIR
from pgqueue.wait import Timeout
from pgqueue.wait import until as wait_until

if TYPE_CHECKING:  # imported where used: workers start without them
    import pandas as pd
    import sqlalchemy

# The POC names of the command line and the sql/ folder of each design (it names the database).
DESIGNS = {
    "notify-listen": "notify_listen",
    "single-call": "single_call",
    "hardened": "hardened",
}
# Designs that start from the model lessons 01-02 build (pipelines, heartbeats).
SHARED = "shared"
BUILT_ON_SHARED = {"notify-listen", "single-call"}
PREFIX_ENV = "PGQUEUE_DB_PREFIX"  # lets tests keep their databases apart from a learner's
DEFAULT_PREFIX = "pgqueue_"
# Workers name their connections with this prefix, so a reset can tell them from notebooks.
WORKER_APPLICATION = "pgqueue worker"
STOP_WAIT = 3.0


def check_poc(poc: str) -> str:
    """`poc` if it names a design, else a clear error listing the names."""
    if poc not in DESIGNS:
        raise PgQueueError(f"unknown lab {poc!r}; choose one of: {', '.join(DESIGNS)}")
    return poc


def prefix() -> str:
    """The prefix of every database the kit creates (`PGQUEUE_DB_PREFIX`, default 'pgqueue_')."""
    value = os.environ.get(PREFIX_ENV, DEFAULT_PREFIX)
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,30}", value):
        raise PgQueueError(
            f"{PREFIX_ENV} must be lowercase letters, digits and _ (at most 31), got {value!r}"
        )
    return value


def database(poc: str) -> str:
    """The database name of a lab, e.g. 'pgqueue_single_call'."""
    return prefix() + DESIGNS[check_poc(poc)]


def sql_folders(poc: str) -> list[Path]:
    """The folders whose numbered steps build a lab, in order (shared/ first where it applies)."""
    own = SQL_DIR / DESIGNS[check_poc(poc)]
    return [SQL_DIR / SHARED, own] if poc in BUILT_ON_SHARED else [own]


def steps(poc: str) -> list[schema.Step]:
    """The schema steps of a lab, in order."""
    return schema.steps(sql_folders(poc))


def step(poc: str, which: int | str) -> schema.Step:
    """One schema step of a lab (by number or name); displays its SQL in a notebook."""
    return schema.find(sql_folders(poc), which)


def _q():
    return queries.load("kit/queries.sql")


def exists(poc: str) -> bool:
    """Whether the lab's database has been created."""
    with server.connect() as admin:
        return admin.execute(_q()["database_exists"], {"name": database(poc)}).fetchone()[0]


def is_set_up(poc: str) -> bool:
    """Whether the lab exists and has its workers' table (its heartbeat step has run)."""
    if not exists(poc):
        return False
    with connect(poc) as conn:
        return conn.execute(_q()["has_heartbeats"]).fetchone()[0]


def ensure(poc: str) -> str:
    """Create the lab's database if it is missing (no schema yet); its URI."""
    name = database(poc)
    with server.connect() as admin:
        if not admin.execute(_q()["database_exists"], {"name": name}).fetchone()[0]:
            # another process may have created it a moment ago
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                admin.execute(sql.SQL(_q()["create_database"]).format(db=sql.Identifier(name)))
    return url(poc, create=False)


def url(poc: str, *, create: bool = True) -> str:
    """The libpq URI of a lab's database (created on first use)."""
    if create:
        ensure(poc)
    return server.resolve().uri_for(database(poc))


def stop_workers(poc: str, wait: float = STOP_WAIT) -> int:
    """Flip every kill switch of a lab and wait up to `wait` s for its workers to disconnect.

    Returns how many worker connections were still open when the wait ended.
    """
    name = database(poc)
    q = _q()
    with server.connect() as admin:
        if not admin.execute(q["database_exists"], {"name": name}).fetchone()[0]:
            return 0
    with connect(poc) as conn:
        if conn.execute(q["has_heartbeats"]).fetchone()[0]:
            conn.execute(q["kill_all_workers"])
        params = {"name": name, "pattern": WORKER_APPLICATION + "%"}

        def still_connected() -> int:
            return conn.execute(q["worker_sessions"], params).fetchone()[0]

        # stragglers are disconnected by the caller's DROP ... WITH (FORCE)
        with contextlib.suppress(Timeout):
            wait_until(lambda: still_connected() == 0, wait, "workers disconnecting", 0.1)
        return still_connected()


def reset(poc: str, upto: int | str | None = None, *, examples: bool = False, wait: float = STOP_WAIT) -> str:
    """Recreate a lab from sql/ up to step `upto` (all when None, none when 0), examples if asked.

    Workers still registered in the lab are asked to stop first (their kill switch); any still
    connected after `wait` seconds are disconnected by the drop.
    """
    name = database(poc)
    folders = sql_folders(poc)
    if upto not in (None, 0):
        schema.find(folders, upto)  # a bad step name fails before anything is dropped
    q = _q()
    with server.connect() as admin:
        admin.execute(q["lock_lab"], {"name": name})
        try:
            stop_workers(poc, wait)
            admin.execute(sql.SQL(q["drop_database"]).format(db=sql.Identifier(name)))
            admin.execute(sql.SQL(q["create_database"]).format(db=sql.Identifier(name)))
        finally:
            admin.execute(q["unlock_lab"], {"name": name})
    if all(folder.is_dir() for folder in folders):
        with connect(poc) as conn:
            schema.apply_upto(conn, folders, upto, examples=examples)
    return url(poc, create=False)


def apply(poc: str, which: int | str, *, examples: bool = False) -> bool:
    """Run one schema step in a lab (a no-op if it ran already); True if it ran now."""
    with connect(poc) as conn:
        return schema.apply(conn, step(poc, which), examples=examples)


def connect(poc: str, **kwargs) -> psycopg.Connection:
    """A new psycopg connection to a lab's database (autocommit unless told otherwise)."""
    return server.connect(database(poc), **kwargs)


_engines: dict[tuple[str, str], sqlalchemy.Engine] = {}


def engine(poc: str) -> sqlalchemy.Engine:
    """A SQLAlchemy engine on a lab's database, for `pandas.read_sql` (one per lab and server)."""
    import sqlalchemy

    name = database(poc)
    key = (server.resolve().uri, name)
    if key not in _engines:
        ensure(poc)
        # pre-ping: a reset drops the database under the pool, and the next query must reconnect
        _engines[key] = sqlalchemy.create_engine(
            "postgresql+psycopg://",
            creator=lambda: server.connect(name, autocommit=False),
            pool_pre_ping=True,
        )
    return _engines[key]


def frame(poc: str, query: str, **params) -> pd.DataFrame:
    """The rows of a query on a lab's database as a DataFrame (values as %(name)s parameters)."""
    import pandas as pd

    return pd.read_sql(query, engine(poc), params=params or None)
