"""PgBouncer in transaction mode in front of the kit's server: lesson 13's pooler, private to its owner."""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import psycopg

from pgqueue import children, paths, queries, server
from pgqueue.errors import PgQueueError
from pgqueue.server.account import server_account
from pgqueue.wait import Timeout, until

_PREFIX = "pgqueue-pooler-"
PORT = 6432  # only names the socket file: the pooler listens on no TCP port
START_TIMEOUT = 15.0  # seconds for PgBouncer to start listening and let a first client through
_ROLE = re.compile(r"[a-z_][a-z0-9_]{0,62}")
# a value of PgBouncer's connect strings; spaces or quotes would need quoting we do not need
_PLAIN = re.compile(r"[A-Za-z0-9_./:@%+=-]+")


INSTALL = "apt-get install pgbouncer, or brew install pgbouncer"  # a system package: pip cannot bring it


def binary() -> str:
    """The pgbouncer program, or a one-line error saying how to install it."""
    # Debian puts it in /usr/sbin, which a normal user's PATH often lacks; a file there that is not
    # executable (a hidden tool, a broken install) counts as missing
    found = shutil.which("pgbouncer") or next(
        (p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if os.access(p, os.X_OK)), None
    )
    if found is None:
        raise PgQueueError(f"PgBouncer is not installed (lesson 13 starts one): {INSTALL}")
    return found


def installed() -> bool:
    """Whether PgBouncer is installed here (an executable pgbouncer)."""
    try:
        binary()
    except PgQueueError:
        return False
    return True


@dataclass
class Pooler:
    """A running PgBouncer: its private folder (socket, config, log) and how to reach it."""

    folder: Path
    pool_size: int
    user: str  # the server's role that clients connect as unless they name another
    process: subprocess.Popen
    users: tuple[str, ...] = field(default=())
    release: tuple[int, ...] = ()  # PgBouncer's version
    upstream: str = "embedded"  # the kind of server behind it: "embedded" or "dsn"

    def uri(self, dbname: str = "postgres", user: str | None = None) -> str:
        """The libpq URI of `dbname` through the pooler."""
        params = {"user": user or self.user, "host": str(self.folder), "port": PORT, "dbname": dbname}
        return server.to_uri(params)

    def connect(self, dbname: str = "postgres", *, user: str | None = None, **kwargs) -> psycopg.Connection:
        """A new client connection through the pooler (autocommit unless told otherwise)."""
        kwargs.setdefault("autocommit", True)
        return psycopg.connect(self.uri(dbname, user), connect_timeout=server.CONNECT_TIMEOUT, **kwargs)

    def env(self) -> dict[str, str]:
        """The environment that sends a kit process (a worker) through the pooler."""
        return {server.DSN_ENV: self.uri(), server.POOLED_ENV: "1"}

    @property
    def running(self) -> bool:
        """Whether PgBouncer still runs."""
        return self.process.poll() is None

    def stop(self) -> None:
        """Stop PgBouncer at once (its clients lose their connections) and remove its folder."""
        if self.process.returncode is None:
            if self.release >= (1, 23):  # SIGTERM would wait for every client to leave
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.process.pid, signal.SIGQUIT)
            children.stop(self.process)
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> Pooler:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        release = ".".join(map(str, self.release))
        return (
            f"Pooler(PgBouncer {release}, transaction mode, pool of {self.pool_size}, {state}, "
            f"at {self.uri()})"
        )


def version(program: str | None = None) -> tuple[int, ...]:
    """PgBouncer's version, e.g. (1, 18, 0)."""
    argv = [program or binary(), "--version"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout
    found = re.search(r"PgBouncer (\d+)\.(\d+)(?:\.(\d+))?", out)
    if found is None:
        raise PgQueueError(f"could not read PgBouncer's version from {out.strip()[:80]!r}")
    return tuple(int(n) for n in found.groups() if n is not None)


def start(pool_size: int = 2, *, users: tuple[str, ...] | list[str] = ()) -> Pooler:
    """Start PgBouncer in transaction mode in front of the kit's server; it stops with this process.

    It listens only on a unix socket in a fresh 0700 folder (nobody else can reach it, so its
    clients need no password) and lets each database have at most `pool_size` server
    connections, whatever the number of clients. `users` are roles besides the server's own
    that may connect through it (a hardened lab's worker role, say). Prepared statements are
    never carried between server connections, whatever the version (as before PgBouncer 1.21).
    """
    if isinstance(pool_size, bool) or not isinstance(pool_size, int) or not 1 <= pool_size <= 100:
        raise PgQueueError(f"pool_size is a whole number from 1 to 100, got {pool_size!r}")
    bad = [u for u in users if not isinstance(u, str) or not _ROLE.fullmatch(u)]
    if bad:
        raise PgQueueError(f"users are role names (lowercase letters, digits, _), got {bad[0]!r}")
    program = binary()
    release = version(program)
    srv = server.resolve()
    upstream = server.params(srv.uri)
    target = {k: str(upstream[k]) for k in ("host", "port") if upstream.get(k)}
    odd = [v for v in target.values() if not _PLAIN.fullmatch(v)]
    if odd:
        raise PgQueueError(f"the pooler cannot reach a server at {odd[0]!r}: no spaces or quotes, please")
    with server.connect() as probe:  # the role and password libpq really used (PGPASSWORD, .pgpass)
        admin, password = probe.info.user, probe.info.password or ""
    account = server_account()  # PgBouncer refuses root: it runs as the server's user then
    owner = (account.pw_uid, account.pw_gid) if account else None
    _remove_orphans()
    # 0700 with a random name nobody can squat; the owner's pid in it tells an orphan apart
    folder = Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-"))
    try:
        if owner:
            os.chown(folder, *owner)
        names = tuple(dict.fromkeys([admin, *users]))
        paths.write_private(folder / "users.txt", _users_file(names, admin, password), owner)
        paths.write_private(folder / "pgbouncer.ini", _config(folder, target, pool_size, release), owner)
        # from 1.23, SIGTERM waits for every client to leave; SIGQUIT stops at once
        quit_signal = "QUIT" if release >= (1, 23) else "TERM"
        argv = [program, str(folder / "pgbouncer.ini")]
        if account:
            # setpriv drops root for the server's user, then arms the parent-death signal again:
            # a change of user clears the one the kit's trampoline set
            argv = ["setpriv", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--clear-groups",
                    "--pdeathsig", quit_signal, *argv]  # fmt: skip
        with open(os.open(folder / "stderr.log", os.O_WRONLY | os.O_CREAT, 0o600), "w") as err:
            proc = children.spawn(argv, stdout=err, stderr=subprocess.STDOUT)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    pooler = Pooler(folder, pool_size, admin, proc, names, release, srv.kind)
    atexit.register(pooler.stop)  # a notebook that never calls stop() leaves no folder behind
    try:
        _wait_ready(pooler)
    except BaseException:
        pooler.stop()
        raise
    return pooler


def _users_file(names: tuple[str, ...], admin: str, password: str) -> str:
    """PgBouncer's auth_file: a line per role, in double quotes (a quote inside is doubled)."""
    quoted = lambda text: '"' + text.replace('"', '""') + '"'  # noqa: E731 - one use, one line
    return "".join(f"{quoted(name)} {quoted(password if name == admin else '')}\n" for name in names)


def _remove_orphans() -> None:
    """Remove the folders of poolers whose owner died without cleaning up (SIGKILLed, say).

    PgBouncer itself died with its owner (the parent-death signal); its folder, holding its
    configuration and the server's password if PGQUEUE_DSN has one, must not stay behind.
    """
    account = server_account()
    owners = {os.geteuid(), *([account.pw_uid] if account else [])}
    for folder in Path(tempfile.gettempdir()).glob(f"{_PREFIX}*-*"):
        pid = folder.name.removeprefix(_PREFIX).split("-", 1)[0]
        try:
            ours = folder.is_dir() and not folder.is_symlink() and folder.stat().st_uid in owners
        except OSError:
            continue
        if ours and pid.isdigit() and not psutil.pid_exists(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _config(folder: Path, target: dict[str, str], pool_size: int, release: tuple[int, ...]) -> str:
    upstream = " ".join(f"{k}={v}" for k, v in target.items())
    # 1.21 learned to carry prepared statements across server connections (on by default from
    # 1.24): the lesson shows a pool that does not, the same on every version
    prepared = "max_prepared_statements = 0\n" if release >= (1, 21) else ""
    return (
        "; Written by pgqueue (lesson 13): PgBouncer in transaction mode, on a private unix socket.\n"
        "[databases]\n"
        f"* = {upstream}\n"
        "\n[pgbouncer]\n"
        "listen_addr =\n"
        f"listen_port = {PORT}\n"
        f"unix_socket_dir = {folder}\n"
        "unix_socket_mode = 0600\n"
        "auth_type = trust\n"
        f"auth_file = {folder / 'users.txt'}\n"
        "pool_mode = transaction\n"
        f"default_pool_size = {pool_size}\n"
        f"max_db_connections = {pool_size}\n"
        "max_client_conn = 500\n"
        "server_login_retry = 1\n"
        f"logfile = {folder / 'pgbouncer.log'}\n"
        "log_connections = 0\n"
        "log_disconnections = 0\n" + prepared
    )


def _wait_ready(pooler: Pooler) -> None:
    """Until every role gets through to the server; a one-line error if PgBouncer gave up or a role cannot."""
    socket = pooler.folder / f".s.PGSQL.{PORT}"
    try:
        until(lambda: socket.exists() or not pooler.running, START_TIMEOUT, "PgBouncer listening")
    except Timeout:
        raise PgQueueError(f"PgBouncer did not start listening within {START_TIMEOUT:.0f} s") from None
    if not pooler.running:
        said = [*_lines(pooler.folder / "pgbouncer.log"), *_lines(pooler.folder / "stderr.log")] or [""]
        raise PgQueueError(f"PgBouncer exited at once: {said[-1]}")
    for role in pooler.users:
        try:
            until(lambda role=role: _lets_in(pooler, role), START_TIMEOUT, f"PgBouncer letting {role} in")
        except Timeout:
            raise PgQueueError(f"PgBouncer did not accept connections within {START_TIMEOUT:.0f} s") from None
        except psycopg.OperationalError as exc:
            reason = str(exc).strip().splitlines()[-1]
            if pooler.upstream == "embedded" and "Peer authentication failed" in reason:
                hint = ": the embedded server predates lesson 13's pooler: python -m pgqueue db stop"
            elif role != pooler.user:
                hint = f": PgBouncer logs in as {role} with no password (it reads no .pgpass)"
            else:
                hint = ""
            said = f"PgBouncer runs, but cannot log in to the server as {role}: {reason}{hint}"
            raise PgQueueError(said) from None


def _lines(path: Path) -> list[str]:
    return path.read_text(errors="replace").strip().splitlines() if path.exists() else []


def _lets_in(pooler: Pooler, role: str) -> bool:
    """Whether `role` gets through to the server: False while PgBouncer does not listen yet."""
    # its socket exists a moment before PgBouncer listens on it; a login refused is raised
    try:
        with pooler.connect(user=role) as conn:
            conn.execute(queries.load("clients/pooler.sql")["ping"])
        return True
    except psycopg.OperationalError as exc:
        if pooler.running and "accepting connections on that socket" in str(exc):
            return False
        raise
