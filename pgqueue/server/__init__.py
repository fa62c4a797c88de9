"""Which PostgreSQL the kit talks to: the server in `PGQUEUE_DSN` when set, else its embedded one."""

import os
import sys
import time
from dataclasses import dataclass
from functools import cache
from urllib.parse import quote, urlencode

import psycopg
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pgqueue import queries, values
from pgqueue.errors import PgQueueError
from pgqueue.server import embedded
from pgqueue.wait import Backoff

DSN_ENV = "PGQUEUE_DSN"
# "1" when PGQUEUE_DSN leads through a transaction-mode pooler (lesson 13): the kit then prepares
# no statement on the server, since the next transaction may run on another server connection,
# where the prepared statement does not exist (unless PgBouncer 1.21+ carries them over, with
# max_prepared_statements above 0, the default from 1.24).
POOLED_ENV = "PGQUEUE_POOLED"
# seconds to wait for PGQUEUE_DSN's server to answer before giving up (default 0: at once); the
# sandbox sets it, because a container may start before its database is ready
WAIT_ENV = "PGQUEUE_WAIT_FOR_DB"
CONNECT_TIMEOUT = 3  # seconds: a wrong address is reported well within 5 s
# seconds an unanswered connection is tried again, only where PGQUEUE_WAIT_FOR_DB is set: short,
# since a worker's stop signal waits for it (its own loop reconnects with backoff after that)
RETRY_UNANSWERED = 10.0
# what libpq's ping says of a server worth waiting for: nothing answers, or it rejects (starting up)
_NOT_READY = {pq.Ping.NO_RESPONSE, pq.Ping.REJECT}


def to_uri(params: dict) -> str:
    """A libpq URI from connection parameters (a socket folder goes into `?host=`)."""
    rest = {k: str(v) for k, v in params.items() if v not in (None, "")}
    user, password = rest.pop("user", ""), rest.pop("password", "")
    host, port, dbname = rest.pop("host", ""), rest.pop("port", ""), rest.pop("dbname", "")
    auth = quote(user, safe="") + (":" + quote(password, safe="") if password else "")
    netloc = auth + "@" if auth else ""
    if host and not host.startswith("/") and "," not in host:
        netloc += f"[{host}]" if ":" in host else host
        netloc += f":{port}" if port else ""
    else:
        rest.update({k: v for k, v in (("host", host), ("port", port)) if v})
    query = "?" + urlencode(rest, safe="/", quote_via=quote) if rest else ""
    return f"postgresql://{netloc}/{quote(dbname, safe='')}{query}"


def mask(dsn: str) -> str:
    """The DSN as a URI with its password replaced by ***, safe to print."""
    given = params(dsn)
    if not given.get("password"):
        return to_uri(given)
    return to_uri({**given, "password": "PASSWORDMASK"}).replace("PASSWORDMASK", "***")


def params(dsn: str) -> dict:
    """The connection parameters of a libpq URI or connection string (host, port, user, ...)."""
    try:
        return conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        first = str(exc).splitlines()[0]
        raise PgQueueError(f"{DSN_ENV} is not a libpq URI or connection string: {first}") from None


@dataclass(frozen=True)
class Server:
    """A PostgreSQL server the kit may create databases on."""

    kind: str  # "embedded" or "dsn"
    uri: str  # its administrative database

    def uri_for(self, dbname: str) -> str:
        """The URI of one database on this server."""
        return to_uri({**params(self.uri), "dbname": dbname})

    def describe(self) -> str:
        """One line: which server, where (password masked)."""
        source = "the kit's embedded PostgreSQL" if self.kind == "embedded" else DSN_ENV
        return f"{source} at {mask(self.uri)}"

    def __repr__(self) -> str:
        return f"Server({self.describe()})"


class Unreachable(PgQueueError):
    """The server did not answer (or, for the embedded one, is not running and was not to be started)."""


def _unreachable(dsn: str, exc: Exception) -> Unreachable:
    given = params(dsn)
    where = (
        f"host {given.get('host') or 'localhost (socket)'}, port {given.get('port') or 5432}, "
        f"database {given.get('dbname') or given.get('user') or '(default)'}"
    )
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    reason = lines[0].removeprefix("connection failed: ") if lines else type(exc).__name__
    return Unreachable(f"cannot reach PostgreSQL ({where}; {DSN_ENV}={mask(dsn)}): {reason}")


def _server_said_why(exc: psycopg.OperationalError) -> bool:
    # psycopg gives no SQLSTATE for a failed connection; libpq's message holds the server's
    # error with its severity when there was one, and only a transport error when there was not
    return any(f"{severity}:  " in str(exc) for severity in ("FATAL", "ERROR", "PANIC"))


@cache
def _checked(dsn: str) -> str:
    """The DSN, once its server has answered: at once, or within PGQUEUE_WAIT_FOR_DB seconds."""
    # Only silence or "not now" (a server still starting) is waited for: libpq's ping tells those
    # from an answer, so a wrong password or a missing database is reported at once.
    deadline = time.monotonic() + wait_for_db()
    backoff, said = Backoff(0.25, 4.0), False
    # a ping without a timeout can hang on a lost SYN for 40 s (seen while a container joined the network)
    ping = make_conninfo(dsn, connect_timeout=CONNECT_TIMEOUT).encode()
    while True:
        while (left := deadline - time.monotonic()) > 0 and pq.PGconn.ping(ping) in _NOT_READY:
            if not said:
                print(f"pgqueue: waiting up to {left:.0f} s for PostgreSQL at {mask(dsn)}", file=sys.stderr)
                said = True
            time.sleep(min(backoff.next(), left))
        try:
            with psycopg.connect(dsn, connect_timeout=CONNECT_TIMEOUT, autocommit=True):
                return dsn
        except psycopg.OperationalError as exc:
            # a ping that answered, then a connection that did not (dropped or timed out under
            # load, or the server stopping again): within the wait that is "not yet" as well
            left = deadline - time.monotonic()
            if left <= 0 or (_server_said_why(exc) and pq.PGconn.ping(ping) not in _NOT_READY):
                raise _unreachable(dsn, exc) from None
            time.sleep(min(backoff.next(), left))


def wait_for_db() -> float:
    """Seconds the kit waits for its database (PGQUEUE_WAIT_FOR_DB; 0 when unset: no waiting)."""
    text = os.environ.get(WAIT_ENV, "").strip()
    if not text:
        return 0.0
    try:
        return values.seconds(text, WAIT_ENV, zero_ok=True)
    except values.BadValue as exc:
        raise PgQueueError(str(exc)) from None


def resolve(*, start: bool = True) -> Server:
    """The server to use: `PGQUEUE_DSN` if set (checked once), else the embedded one (started if `start`)."""
    # a worker reconnecting after `db stop` (start=False) waits for the server to come back
    dsn = os.environ.get(DSN_ENV, "").strip()
    if dsn:
        params(dsn)
        return Server("dsn", _checked(dsn))
    uri = embedded.ensure_running() if start else embedded.attach()
    if uri is None:
        raise Unreachable("the kit's embedded PostgreSQL is not running (python -m pgqueue db start)")
    return Server("embedded", uri)


def connect(
    dbname: str | None = None,
    *,
    autocommit: bool = True,
    application_name: str = "pgqueue",
    start: bool = True,
    user: str | None = None,
) -> psycopg.Connection:
    """A new connection to `dbname` (default: the server's administrative database), as `user` if given."""
    srv = resolve(start=start)
    dsn = srv.uri_for(dbname) if dbname else srv.uri
    as_user = {"user": user} if user else {}
    pooled = {"prepare_threshold": None} if pooled_by_env() else {}
    # in a container network a name can fail to resolve, or a first connection be dropped, for a
    # moment after a container starts (seen in the sandbox's `up`): where the kit waits for its
    # database (PGQUEUE_WAIT_FOR_DB), a connection that got no answer is tried again, briefly
    deadline = time.monotonic() + min(wait_for_db(), RETRY_UNANSWERED)
    backoff = Backoff(0.25, 2.0)
    while True:
        try:
            return psycopg.connect(
                dsn,
                **as_user,
                **pooled,
                autocommit=autocommit,
                application_name=application_name,
                connect_timeout=CONNECT_TIMEOUT,
            )
        except psycopg.OperationalError as exc:
            left = deadline - time.monotonic()
            if left <= 0 or _server_said_why(exc):
                raise _unreachable(dsn, exc) from None
            time.sleep(min(backoff.next(), left))


def pooled_by_env() -> bool:
    """Whether PGQUEUE_POOLED says a transaction-mode pooler is in the way (0, 1 or unset)."""
    value = os.environ.get(POOLED_ENV, "").strip()
    if value not in ("", "0", "1"):
        raise PgQueueError(f"{POOLED_ENV} is 0 or 1 (1: a transaction-mode pooler in the way), got {value!r}")
    return value == "1"


def version() -> str:
    """The server's version, e.g. '18.6'."""
    with connect() as conn:
        return conn.execute(queries.load("kit/queries.sql")["server_version"]).fetchone()[0].split()[0]
