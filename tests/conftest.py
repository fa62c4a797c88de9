"""Fixtures: fresh databases, a private embedded-server home, a made-up design, the CLI."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import psutil
import pytest
from psycopg import sql

from pgqueue import children, queries, server
from pgqueue.queues import designs, labs
from pgqueue.server import embedded, home
from pgqueue.wait import until

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def fresh_db():
    """The name of a new, empty database on the kit's server, dropped afterwards."""
    q = queries.load("kit/queries.sql")
    name = f"{labs.prefix()}db_{uuid.uuid4().hex[:8]}"
    with server.connect() as admin:
        admin.execute(sql.SQL(q["create_database"]).format(db=sql.Identifier(name)))
    yield name
    with server.connect() as admin:
        admin.execute(sql.SQL(q["drop_database"]).format(db=sql.Identifier(name)))


@pytest.fixture
def own_home(monkeypatch):
    """A private, empty embedded-server home (PGQUEUE_DSN unset); its server is stopped after."""
    folder = Path(tempfile.mkdtemp(prefix="pgqueue-home-"))
    monkeypatch.setenv("PGQUEUE_HOME", str(folder))
    monkeypatch.delenv("PGQUEUE_DSN", raising=False)
    yield home.Layout(folder)
    embedded.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def design(tmp_path, monkeypatch):
    """A made-up sql/ tree whose 'single-call' design is the files a test writes into it."""
    root = tmp_path / "sql"
    single_call = designs.get("single-call")
    for shared in single_call.builds_on:
        (root / shared).mkdir(parents=True)
    folder = root / single_call.folder
    folder.mkdir(parents=True)
    monkeypatch.setattr(designs, "SQL_DIR", root)
    return folder


def run_cli(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """`python -m pgqueue ARGS` in a child process, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "pgqueue", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env={**os.environ, **(env or {})},
    )


def processes_of(home: Path) -> list[psutil.Process]:
    """Live processes of this home only: its postgres and watchdog (the home is in their command
    line) and every kit process started with it as PGQUEUE_HOME (workers, kernels, the CLI).

    A learner may run workers of another checkout beside the tests: those are not counted.
    """
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        try:
            ours = str(home) in " ".join(proc.info["cmdline"] or []) or proc.environ().get(
                "PGQUEUE_HOME"
            ) == str(home)
        except psutil.Error:
            continue  # gone meanwhile, or another user's
        if ours:
            found.append(proc)
    return found


def workers_of(home: Path) -> list[psutil.Process]:
    """The worker processes (`pgqueue worker ...`) of this home still running."""
    return [p for p in processes_of(home) if "pgqueue worker" in " ".join(p.cmdline())]


_ANOTHER = pytest.StashKey[tuple]()


@pytest.hookimpl(trylast=True)  # after the root conftest.py set this run's environment
def pytest_configure(config: pytest.Config) -> None:
    """A learner's worker from another checkout runs beside the whole run; no test may count it.

    One for the run, started by xdist's controller (or a -n 0 run's only process): its processes
    see it as every process of theirs would see another checkout's.
    """
    if hasattr(config, "workerinput") or config.option.collectonly:
        return
    home = Path(tempfile.mkdtemp(prefix="pgqueue-another-checkout-"))
    prefix = f"pgqueue_another{os.getpid()}_"
    # as a learner's checkout runs: no template databases (the suite's own processes keep them)
    env = {"PGQUEUE_HOME": str(home), "PGQUEUE_DB_PREFIX": prefix, "PGQUEUE_TEMPLATES": "0"}
    built = run_cli("setup", "--poc", "single-call", "--examples", env=env)
    if built.returncode != 0:
        _remove(home)
        raise AssertionError(built.stderr)
    # a child of this pytest process: were it killed, the worker and so its server would go too
    argv = [sys.executable, "-m", "pgqueue", "worker", "--poc", "single-call", "assigner", "1.0.0"]
    worker = children.spawn(
        [*argv, "--poll", "1"],
        cwd=REPO,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    config.stash[_ANOTHER] = (worker, home, prefix, env)


def pytest_sessionfinish(session: pytest.Session) -> None:
    another = session.config.stash.get(_ANOTHER, None)
    if another is not None and another[0].poll() is not None:
        session.config.get_terminal_writer().line(
            "FAILED: a test stopped a worker that was not its own (another checkout's)", red=True
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_unconfigure(config: pytest.Config) -> None:
    worker, home, prefix, env = config.stash.get(_ANOTHER, (None,) * 4)
    if worker is None:
        return
    worker.terminate()
    worker.wait(60)
    if os.environ.get(server.DSN_ENV):
        with server.connect() as admin:
            name = prefix + designs.get("single-call").folder
            admin.execute(
                sql.SQL(queries.load("kit/queries.sql")["drop_database"]).format(db=sql.Identifier(name))
            )
    run_cli("db", "stop", env=env)
    _remove(home)


def _remove(home: Path) -> None:
    # its watchdog may take its lock once more on its way out, making the file again
    until(lambda: shutil.rmtree(home, ignore_errors=True) or not home.exists(), 30, f"{home} removed")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def start_lab(port: int, token: str, log, env: dict | None = None) -> subprocess.Popen:
    """`python -m pgqueue lab` without a browser, on `port`, with `token`, output to `log`.

    It starts with SIGINT ignored, as a background job of a script (or of a test run started
    as one) inherits it: the lab must stop on Ctrl-C's signal all the same.
    """
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pgqueue",
            "lab",
            "--no-browser",
            f"--port={port}",
            "--",
            f"--IdentityProvider.token={token}",
        ],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
        preexec_fn=_ignore_sigint,
    )
