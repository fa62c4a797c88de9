"""Lab databases: one per queue design, created on first use, reset from sql/ up to a named step."""

from __future__ import annotations

import contextlib
import functools
import os
import re
import secrets
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

from pgqueue import queries, server
from pgqueue.errors import PgQueueError
from pgqueue.queues import designs, schema
from pgqueue.wait import Backoff

if TYPE_CHECKING:  # imported where used: workers start without them
    import pandas as pd
    import sqlalchemy

PREFIX_ENV = "PGQUEUE_DB_PREFIX"  # lets tests keep their databases apart from a learner's
# 1: keep each finished build as a template database and copy it next time (the test suite's
# setting: it builds the same labs hundreds of times). Off for learners: no hidden databases.
TEMPLATES_ENV = "PGQUEUE_TEMPLATES"
DEFAULT_PREFIX = "pgqueue_"
# Workers name their connections with this prefix, so a reset can tell them from notebooks.
WORKER_APPLICATION = "pgqueue worker"


def prefix() -> str:
    """The prefix of every database the kit creates (`PGQUEUE_DB_PREFIX`, default 'pgqueue_')."""
    value = os.environ.get(PREFIX_ENV, DEFAULT_PREFIX)
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,30}", value):
        raise PgQueueError(
            f"{PREFIX_ENV} must be lowercase letters, digits and _ (at most 31), got {value!r}"
        )
    return value


@contextlib.contextmanager
def prefixed(extra: str) -> Iterator[str]:
    """Within the block, every lab of this process and of the workers it starts is named
    `<prefix><extra><design>`: labs apart from the lessons' (the demo's); the prefix it set."""
    before = os.environ.get(PREFIX_ENV)
    value = prefix() + extra
    os.environ[PREFIX_ENV] = value
    try:
        prefix()  # checked: letters, digits and _, short enough
        yield value
    finally:
        if before is None:
            os.environ.pop(PREFIX_ENV, None)
        else:
            os.environ[PREFIX_ENV] = before


def database(poc: str) -> str:
    """The database name of a lab, e.g. 'pgqueue_single_call'."""
    return prefix() + designs.get(poc).folder


def sql_folders(poc: str) -> list[Path]:
    """The folders whose numbered steps build a lab, in order (shared/ first where it applies)."""
    return designs.get(poc).sql_folders()


def steps(poc: str) -> list[schema.Step]:
    """The schema steps of a lab, in order."""
    return schema.steps(sql_folders(poc))


def step(poc: str, which: int | str) -> schema.Step:
    """One schema step of a lab (by number or name); displays its SQL in a notebook."""
    return schema.find(sql_folders(poc), which)


_q = functools.partial(queries.load, "kit/queries.sql")


def exists(poc: str) -> bool:
    """Whether the lab's database has been created."""
    with server.connect() as admin:
        return admin.execute(_q()["database_exists"], {"name": database(poc)}).fetchone()[0]


def is_set_up(poc: str) -> bool:
    """Whether the lab exists and its workers can register (its design's marker table exists)."""
    if not exists(poc):
        return False
    with connect(poc) as conn:
        return conn.execute(_q()["table_exists"], {"table": designs.get(poc).set_up_when}).fetchone()[0]


def require_set_up(poc: str, wait: float = 0.0) -> None:
    """Nothing, or a one-line error giving the command that builds the lab.

    With `wait` (seconds), a lab that is missing or being built is waited for first: a
    container's worker may start before the sandbox's setup has built its lab.
    """
    deadline, backoff, said = time.monotonic() + wait, Backoff(0.25, 2.0), False
    while wait > 0 and not _ready(poc):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        if not said:
            print(f"pgqueue: waiting up to {left:.0f} s for lab {poc} to be set up", file=sys.stderr)
            said = True
        time.sleep(min(backoff.next(), left))
    if not is_set_up(poc):
        raise PgQueueError(
            f"lab {poc!r} is not set up yet (database {database(poc)}): "
            f"python -m pgqueue setup --poc {poc} --examples"
        )


def _ready(poc: str) -> bool:
    """Set up and not being rebuilt right now; False too while a reset drops our connection.

    A reset may drop the database between `exists` and the connection to it: that connection
    then fails as Unreachable ("database does not exist"), which means "not yet" here too.
    """
    try:
        return is_set_up(poc) and not lab_busy(poc)
    except (psycopg.OperationalError, server.Unreachable):
        return False


def ensure(poc: str) -> str:
    """Create the lab's database if it is missing (no schema yet); its URI."""
    name = database(poc)
    with server.connect() as admin:
        if not admin.execute(_q()["database_exists"], {"name": name}).fetchone()[0]:
            # another process may have created it a moment ago
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                _create(admin, name)
    return url(poc, create=False)


def _create(admin: psycopg.Connection, name: str, template: str | None = None) -> None:
    if template is None:
        create = sql.SQL(_q()["create_database"]).format(db=sql.Identifier(name))
    else:
        create = sql.SQL(_q()["create_database_from_template"]).format(
            db=sql.Identifier(name), template=sql.Identifier(template)
        )
    try:
        admin.execute(create)
    except psycopg.errors.InsufficientPrivilege:
        role = admin.info.user
        raise PgQueueError(
            f"role {role!r} may not create databases on {server.resolve().describe()}; "
            f"grant it (ALTER ROLE {role} CREATEDB) or set PGQUEUE_DSN to a role that may"
        ) from None


def url(poc: str, *, create: bool = True) -> str:
    """The libpq URI of a lab's database (created on first use)."""
    if create:
        ensure(poc)
    return server.resolve().uri_for(database(poc))


@dataclass(frozen=True)
class Rebuilt:
    """What a reset did: the lab, its database, the steps it ran, the workers it disconnected."""

    lab: str
    database: str
    steps: list[str]
    workers_stopped: int
    rebuilt: bool = True  # False: the lab was set up already and kept (keep_existing)


def worker_sessions(poc: str) -> int:
    """How many kit workers are connected to a lab right now."""
    with server.connect() as admin:
        return _worker_sessions(admin, database(poc))


def _worker_sessions(admin: psycopg.Connection, name: str) -> int:
    params = {"name": name, "pattern": WORKER_APPLICATION + "%"}
    return admin.execute(_q()["worker_sessions"], params).fetchone()[0]


def reset(
    poc: str,
    upto: int | str | None = None,
    *,
    examples: bool = False,
    fixes: bool = False,
    keep_existing: bool = False,
) -> Rebuilt:
    """Recreate a lab from sql/ up to step `upto` (all when None, none when 0), examples if asked.

    `fixes` also installs the repairs the lessons teach (`NN_name.fix.sql`), each after its step;
    without it the lab is the original, defects included.

    The drop disconnects the lab's workers; each notices that its lab was reset and stops (a
    job it held went with the old database). Two resets of one lab take turns: the second
    waits until the first has built the lab, then builds it again, or, with `keep_existing`,
    keeps the lab the first one built.
    """
    name = database(poc)
    folders = sql_folders(poc)
    if upto not in (None, 0):
        schema.find(folders, upto)  # a bad step name fails before anything is dropped
    q = _q()
    with server.connect() as admin:
        admin.execute(q["lock_lab"], {"name": name})
        try:
            if keep_existing and is_set_up(poc):
                with connect(poc) as conn:
                    return Rebuilt(poc, name, list(schema.applied(conn)), 0, rebuilt=False)
            stopped = _worker_sessions(admin, name)
            try:
                admin.execute(sql.SQL(q["drop_database"]).format(db=sql.Identifier(name)))
            except psycopg.errors.InsufficientPrivilege as exc:
                raise PgQueueError(
                    f"role {admin.info.user!r} may not drop the lab's database {name} "
                    f"({exc.diag.message_primary}); use the role that made it, or another {PREFIX_ENV}"
                ) from None
            ran = _build(admin, name, folders, upto, examples=examples, fixes=fixes, kept_as=name)
        finally:
            admin.execute(q["unlock_lab"], {"name": name})
    return Rebuilt(poc, name, ran, stopped)


@dataclass(frozen=True)
class Scratch:
    """A throwaway copy of a lab, built from sql/ under its own database name."""

    poc: str
    database: str

    def connect(self, **kwargs) -> psycopg.Connection:
        """A new connection to the scratch database (autocommit unless told otherwise)."""
        return server.connect(self.database, **kwargs)


@contextlib.contextmanager
def scratch(
    poc: str, upto: int | str | None = None, *, examples: bool = False, fixes: bool = False
) -> Iterator[Scratch]:
    """A scratch copy of a lab built up to step `upto`, dropped on leaving the `with` block.

    The kit's checkers try a learner's SQL here, so that a broken attempt never touches the
    lab the lesson is using. Its name is random: two notebooks may check at the same time.
    """
    folders = sql_folders(poc)
    if upto not in (None, 0):
        schema.find(folders, upto)
    name = f"{prefix()}scratch_{secrets.token_hex(4)}"
    q = _q()
    with server.connect() as admin:
        try:
            kept_as = f"{prefix()}scratch"
            _build(admin, name, folders, upto, examples=examples, fixes=fixes, kept_as=kept_as)
            yield Scratch(designs.get(poc).name, name)
        finally:
            admin.execute(sql.SQL(q["drop_database"]).format(db=sql.Identifier(name)))
            # a role named after the copy (the hardened lab's worker role) goes with it
            admin.execute(sql.SQL(q["drop_role"]).format(role=sql.Identifier(f"{name}_worker")))


def _drop_like(admin: psycopg.Connection, pattern: str, also: tuple[str, ...] = ()) -> list[str]:
    """Drop the databases `also` and those named LIKE `pattern`; their names."""
    names = [*also, *(row[0] for row in admin.execute(_q()["databases_like"], {"pattern": pattern}))]
    for name in names:
        admin.execute(sql.SQL(_q()["drop_database"]).format(db=sql.Identifier(name)))
    return names


def drop(poc: str) -> list[str]:
    """Drop a lab's database and the templates kept of it (PGQUEUE_TEMPLATES); the names dropped."""
    name = database(poc)
    with server.connect() as admin:
        return _drop_like(admin, name.replace("_", r"\_") + r"\_tpl\_%", (name,))


def drop_every(prefix_: str) -> list[str]:
    """Drop every database named `prefix_...`, then the roles named so; the databases dropped.

    For a server that outlives a run (PGQUEUE_DSN's): the test suite and `bench` leave none of
    their labs, templates or worker roles there, and a learner's labs (another prefix) stay.
    """
    pattern = prefix_.replace("_", r"\_") + "%"
    with server.connect() as admin:
        names = _drop_like(admin, pattern)
        # the hardened labs' worker roles, once their databases (and grants) are gone
        for (role,) in admin.execute(_q()["roles_like"], {"pattern": pattern}).fetchall():
            admin.execute(sql.SQL(_q()["drop_role"]).format(role=sql.Identifier(role)))
    return names


def templates_on() -> bool:
    """Whether builds are kept as template databases and copied (PGQUEUE_TEMPLATES: 0 or 1)."""
    value = os.environ.get(TEMPLATES_ENV, "").strip()
    if value not in ("", "0", "1"):
        raise PgQueueError(f"{TEMPLATES_ENV} is 0 or 1 (1: keep builds as templates), got {value!r}")
    return value == "1"


def _build(
    admin: psycopg.Connection,
    name: str,
    folders: list[Path],
    upto: int | str | None,
    *,
    examples: bool,
    fixes: bool,
    kept_as: str,
) -> list[str]:
    """Create database `name` holding the steps up to `upto`; the steps it holds.

    With PGQUEUE_TEMPLATES=1 a finished build is kept as `<kept_as>_tpl_<fingerprint>` and
    copied the next time the same files are asked for: an edited step changes the fingerprint.
    The template takes the build's own name as its base, because a step may name things after
    its database (the hardened lab's `<database>_worker` role, granted inside it).
    """
    if not all(folder.is_dir() for folder in folders):
        _create(admin, name)
        return []
    template = None
    if templates_on() and upto != 0:
        template = f"{kept_as}_tpl_{schema.fingerprint(folders, upto, examples=examples, fixes=fixes)[:10]}"
        if admin.execute(_q()["database_exists"], {"name": template}).fetchone()[0]:
            _create(admin, name, template)
            with server.connect(name) as conn:
                return list(schema.applied(conn))
    _create(admin, name)
    with server.connect(name) as conn:
        schema.apply_upto(conn, folders, upto, examples=examples, fixes=fixes)
        ran = list(schema.applied(conn))
    if template is not None and (kept_as == name or not _own_roles(admin, name)):
        # someone already connected to the new lab (a waiting worker), or another process
        # keeping the same build: no template this time, the next build tries again
        with contextlib.suppress(psycopg.errors.ObjectInUse, psycopg.errors.DuplicateDatabase):
            _create(admin, template, name)
    return ran


def _own_roles(admin: psycopg.Connection, name: str) -> list[str]:
    # a scratch copy's roles are dropped with it, which a template's grants to them would forbid
    pattern = name.replace("_", r"\_") + r"\_%"
    return [row[0] for row in admin.execute(_q()["roles_like"], {"pattern": pattern})]


def lab_busy(poc: str) -> bool:
    """Whether another process is resetting this lab right now."""
    with server.connect() as admin, admin.transaction():
        return not admin.execute(_q()["try_lock_lab"], {"name": database(poc)}).fetchone()[0]


def apply(poc: str, which: int | str, *, examples: bool = False, fixes: bool = False) -> bool:
    """Run one schema step in a lab (a no-op if it ran already); True if it ran now."""
    with connect(poc) as conn:
        return schema.apply(conn, step(poc, which), examples=examples, fixes=fixes)


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


def row(poc: str, query: str, **params) -> dict:
    """The one row of a query on a lab's database, by column name."""
    with connect(poc) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(query, params).fetchone()


def frame(poc: str, query: str, **params) -> pd.DataFrame:
    """The rows of a query on a lab's database as a DataFrame (values as %(name)s parameters)."""
    import pandas as pd

    return pd.read_sql(query, engine(poc), params=params or None)
