"""Lesson 13's PgBouncer: private to its owner, on no TCP port, gone with its owner, bad input refused."""

import os
import signal
import stat
import subprocess
import sys

import psutil
import pytest

from pgqueue import queries
from pgqueue.errors import PgQueueError
from pgqueue.server import pooler
from pgqueue.wait import until
from tests import tools
from tests.conftest import REPO


@pytest.fixture
def pgbouncer():
    """A test that starts PgBouncer: skipped where it is missing (failed under PGQUEUE_REQUIRE_TOOLS=1)."""
    tools.require("PgBouncer", pooler.installed(), pooler.INSTALL)


def test_the_pooler_listens_only_on_a_socket_in_a_private_folder(pgbouncer):
    with pooler.start(2) as pool:
        folder = pool.folder
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        for name in ("users.txt", "pgbouncer.ini"):
            assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600, name
        assert (folder / f".s.PGSQL.{pooler.PORT}").is_socket()
        bouncer = psutil.Process(pool.process.pid)
        # no TCP port to listen on (its own connections to a PGQUEUE_DSN server use TCP, of course)
        assert [c for c in bouncer.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN] == []
        if os.geteuid() == 0:  # PgBouncer refuses root: it runs as the server's own user
            assert bouncer.username() != "root"
        with pool.connect() as conn:
            assert conn.execute(queries.load("clients/pooler.sql")["ping"]).fetchone() == (1,)
    assert not folder.exists() and not pool.running


def gone(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


OWNER = """
import sys, time
from pgqueue.server import pooler
pool = pooler.start(1)
print(pool.process.pid, pool.folder, flush=True)
time.sleep(120)
"""


def test_the_pooler_dies_with_its_owner_even_sigkilled_and_the_next_start_removes_its_folder(pgbouncer):
    owner = subprocess.Popen([sys.executable, "-c", OWNER], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        pid, folder = owner.stdout.readline().split()
        bouncer = psutil.Process(int(pid))
        owner.send_signal(signal.SIGKILL)
        owner.wait(10)
        until(lambda: gone(bouncer), 10, "PgBouncer gone")
    finally:
        owner.kill()
        owner.wait(10)
    with pooler.start(1):
        assert not os.path.exists(folder), "the dead owner's folder was left behind"


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"pool_size": 0}, "pool_size is a whole number from 1 to 100, got 0"),
        ({"pool_size": "2"}, "got '2'"),
        ({"pool_size": True}, "got True"),
        ({"users": ["worker; DROP ROLE x"]}, "users are role names"),
    ],
)
def test_bad_input_is_refused_before_anything_starts(kwargs, says):
    with pytest.raises(PgQueueError, match=says.replace("(", r"\(")):
        pooler.start(**kwargs)


def test_a_missing_pgbouncer_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(pooler.shutil, "which", lambda name: None)
    monkeypatch.setattr(pooler.os, "access", lambda path, mode: False)
    assert not pooler.installed()
    with pytest.raises(PgQueueError, match="apt-get install pgbouncer"):
        pooler.start(1)


def test_a_test_that_needs_a_missing_tool_is_skipped_with_how_to_install_it_or_failed_in_ci(monkeypatch):
    monkeypatch.delenv(tools.REQUIRE_ENV, raising=False)
    tools.require("PgBouncer", True, pooler.INSTALL)  # present: the test goes on
    with pytest.raises(pytest.skip.Exception, match="PgBouncer is not installed: apt-get install pgbouncer"):
        tools.require("PgBouncer", False, pooler.INSTALL)
    monkeypatch.setenv(tools.REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="PgBouncer is not installed.*PGQUEUE_REQUIRE_TOOLS=1"):
        tools.require("PgBouncer", False, pooler.INSTALL)
    monkeypatch.setenv(tools.REQUIRE_ENV, "yes")
    with pytest.raises(pytest.fail.Exception, match="PGQUEUE_REQUIRE_TOOLS is 0 or 1, got 'yes'"):
        tools.require("PgBouncer", True, pooler.INSTALL)


def test_the_users_file_doubles_quotes_and_gives_the_password_to_the_server_role_only():
    text = pooler._users_file(("me", "lab_worker"), "me", 'pa"ss')
    assert text == '"me" "pa""ss"\n"lab_worker" ""\n'


def test_the_version_is_read_from_pgbouncer(pgbouncer):
    assert pooler.version() >= (1, 0)


@pytest.mark.parametrize("value", ["yes", "true", "2"])
def test_pgqueue_pooled_is_0_or_1(monkeypatch, value):
    from pgqueue import server

    monkeypatch.setenv(server.POOLED_ENV, value)
    with pytest.raises(PgQueueError, match=f"PGQUEUE_POOLED is 0 or 1.*got '{value}'"):
        server.connect()
