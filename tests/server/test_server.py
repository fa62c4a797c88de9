"""Finding the server: PGQUEUE_DSN or the embedded one, and one clear line when it goes wrong."""

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from pgqueue import PgQueueError, server
from pgqueue.server import embedded
from tests.conftest import run_cli


def test_embedded_server_is_used_when_no_dsn_is_set(own_home):
    srv = server.resolve()
    assert srv.kind == "embedded"
    assert str(own_home.data) in srv.uri
    assert server.version().split(".")[0] == "18"


def test_dsn_is_used_when_set(monkeypatch):
    # the embedded server's own URI serves as "a server of the learner's"
    uri = server.resolve().uri
    monkeypatch.setenv("PGQUEUE_DSN", uri)
    srv = server.resolve()
    assert srv.kind == "dsn"
    with server.connect() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_unreachable_dsn_is_one_line_naming_host_and_database_with_password_masked(monkeypatch):
    monkeypatch.setenv("PGQUEUE_DSN", "postgresql://alice:s3cret@127.0.0.1:1/shop")
    started = time.monotonic()
    with pytest.raises(PgQueueError) as err:
        server.resolve()
    assert time.monotonic() - started < 5  # the bound for a clear answer
    message = str(err.value)
    assert "\n" not in message
    assert "host 127.0.0.1" in message and "port 1" in message and "database shop" in message
    assert "s3cret" not in message and "alice:***@" in message


def test_unreachable_dsn_on_the_command_line_prints_no_traceback():
    result = run_cli("db", "status", env={"PGQUEUE_DSN": "postgresql://bob:pw@127.0.0.1:1/x"})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("pgqueue: error: cannot reach PostgreSQL")
    assert "pw@" not in lines[0]


def test_a_dsn_that_is_not_a_uri_is_refused_with_its_problem(monkeypatch):
    monkeypatch.setenv("PGQUEUE_DSN", "definitely not a dsn")
    with pytest.raises(PgQueueError, match="PGQUEUE_DSN is not a libpq URI"):
        server.resolve()


def test_data_folder_of_another_major_version_says_how_to_reset(own_home):
    own_home.data.mkdir(parents=True)
    (own_home.data / "PG_VERSION").write_text("17\n")
    with pytest.raises(PgQueueError) as err:
        server.resolve()
    message = str(err.value)
    assert "PostgreSQL 17" in message and "PostgreSQL 18" in message
    assert f"rm -rf {own_home.data}" in message
    assert not embedded.status().running


def test_home_that_cannot_be_written_is_named(monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("PGQUEUE_HOME", str(blocker / "home"))
    monkeypatch.delenv("PGQUEUE_DSN", raising=False)
    with pytest.raises(PgQueueError, match="not writable") as err:
        server.resolve()
    assert str(blocker / "home") in str(err.value)


@pytest.mark.parametrize(
    ("params", "uri"),
    [
        (
            {"user": "postgres", "host": "/tmp/sock dir", "dbname": "db"},
            "postgresql://postgres@/db?host=/tmp/sock%20dir",
        ),
        (
            {"user": "u", "password": "p@ss", "host": "h", "port": "5433", "dbname": "d"},
            "postgresql://u:p%40ss@h:5433/d",
        ),
        ({"host": "::1", "dbname": "d"}, "postgresql://[::1]/d"),
    ],
)
def test_uris_round_trip_through_libpq_parsing(params, uri):
    assert server.to_uri(params) == uri
    from psycopg.conninfo import conninfo_to_dict

    assert conninfo_to_dict(uri) == params


def test_uri_for_keeps_the_server_and_changes_only_the_database():
    srv = server.Server("dsn", "postgresql://u:pw@h:5433/postgres?sslmode=disable")
    assert srv.uri_for("lab") == "postgresql://u:pw@h:5433/lab?sslmode=disable"
    assert "pw" not in srv.describe()


class _SocketForwarder:
    """A unix socket that forwards each connection to the tests' server (its socket, or TCP under
    PGQUEUE_DSN): a server that can be switched on after a client started waiting for it."""

    def __init__(self, folder, server_params: dict, drop: frozenset[int] = frozenset()) -> None:
        self.path = str(folder / ".s.PGSQL.5432")
        self.drop = drop  # the connections (counted from 1) closed at once, as a lost one would be
        host, port = server_params["host"], int(server_params.get("port") or 5432)
        if host.startswith("/"):
            self.family, self.target = socket.AF_UNIX, str(Path(host) / f".s.PGSQL.{port}")
        else:
            self.family, self.target = socket.AF_INET, (host, port)
        self.listener = socket.socket(socket.AF_UNIX)
        self.connections = 0

    def start(self) -> None:
        self.listener.bind(self.path)
        self.listener.listen()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            if self.connections in self.drop:
                client.close()
                continue
            upstream = socket.create_connection(self.target) if self.family == socket.AF_INET else None
            if upstream is None:
                upstream = socket.socket(socket.AF_UNIX)
                upstream.connect(self.target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source, sink) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.listener.close()


def test_a_server_that_comes_up_later_is_waited_for_with_one_line(tmp_path):
    params = conninfo_to_dict(server.resolve().uri)
    forwarder = _SocketForwarder(tmp_path, params)
    dsn = f"postgresql:///postgres?host={tmp_path}&user={params['user']}"
    env = {**os.environ, "PGQUEUE_DSN": dsn, "PGQUEUE_WAIT_FOR_DB": "60"}
    cli = subprocess.Popen(
        [sys.executable, "-m", "pgqueue", "status"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        said = cli.stderr.readline()  # nothing answers yet: it says it waits
        assert said.startswith(
            f"pgqueue: waiting up to 60 s for PostgreSQL at postgresql://{params['user']}@/"
        )
        forwarder.start()
        out, err = cli.communicate(timeout=60)
    finally:
        forwarder.close()
        if cli.poll() is None:
            cli.kill()
    assert cli.returncode == 0, err
    assert err == "" and out  # one waiting line, then the status, through the server switched on
    assert forwarder.connections >= 1


def test_a_connection_lost_after_the_ping_answered_is_tried_again_within_the_wait(tmp_path):
    # the compose sandbox met this under load: the server answered the ping, then the next
    # connection was lost; the wait is for a connection that works, not for one answer
    params = conninfo_to_dict(server.resolve().uri)
    forwarder = _SocketForwarder(tmp_path, params, drop=frozenset({2}))  # 1 is the ping
    forwarder.start()
    dsn = f"postgresql:///postgres?host={tmp_path}&user={params['user']}"
    try:
        result = run_cli("status", env={"PGQUEUE_DSN": dsn, "PGQUEUE_WAIT_FOR_DB": "60"})
        without_wait = run_cli("status", env={"PGQUEUE_DSN": dsn, "PGQUEUE_WAIT_FOR_DB": "0"})
    finally:
        forwarder.close()
    assert result.returncode == 0, result.stderr
    assert forwarder.connections >= 4  # the ping, the lost one, a ping again, the one that worked
    assert without_wait.returncode == 0  # nothing lost this time: the drop was the second only


def test_with_a_wait_a_later_connection_that_gets_no_answer_is_tried_again(tmp_path):
    # the sandbox's `setup` met this after `up`: the wait was over, then the name `db` failed to
    # resolve for a moment; the connections after the wait are retried briefly too
    params = conninfo_to_dict(server.resolve().uri)
    forwarder = _SocketForwarder(tmp_path, params, drop=frozenset({3}))  # the ping, the wait's, then
    forwarder.start()
    dsn = f"postgresql:///postgres?host={tmp_path}&user={params['user']}"
    try:
        result = run_cli("status", env={"PGQUEUE_DSN": dsn, "PGQUEUE_WAIT_FOR_DB": "60"})
    finally:
        forwarder.close()
    assert result.returncode == 0, result.stderr
    assert forwarder.connections >= 4


def test_a_server_that_answers_no_is_not_waited_for():
    # a database that does not exist is an answer (SQLSTATE 3D000), not a server still starting
    params = conninfo_to_dict(server.resolve().uri)
    dsn = f"postgresql:///no_such_database?host={params['host']}&user={params['user']}"
    started = time.monotonic()
    result = run_cli("status", env={"PGQUEUE_DSN": dsn, "PGQUEUE_WAIT_FOR_DB": "60"})
    assert result.returncode == 1 and time.monotonic() - started < 20
    assert "waiting" not in result.stderr and 'database "no_such_database" does not exist' in result.stderr


def test_waiting_for_a_server_that_drops_connections_keeps_to_its_deadline():
    # a listener that never accepts, its queue full: further SYNs are dropped, as they were while
    # a container joined the sandbox's network; every attempt must give up after its timeout
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
            fillers.append(filler)
        started = time.monotonic()
        result = run_cli(
            "status",
            env={"PGQUEUE_DSN": f"postgresql://nobody@127.0.0.1:{port}/x", "PGQUEUE_WAIT_FOR_DB": "4"},
            timeout=120,
        )
        elapsed = time.monotonic() - started
    finally:
        for s in [*fillers, listener]:
            s.close()
    assert result.returncode == 1
    assert result.stderr.startswith("pgqueue: waiting up to 4 s for PostgreSQL")
    assert "cannot reach PostgreSQL" in result.stderr
    assert elapsed < 30, f"took {elapsed:.0f} s: an attempt hung past its connect timeout"
