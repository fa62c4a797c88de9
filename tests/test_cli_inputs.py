"""Bad input on the command line: a mistake gets a usage line and exit 2, a problem one line and exit 1.

A mistake is a value the command could have rejected by reading it; a problem is something the
user can fix in the world (a pipeline the lab lacks, a lab not set up, a server that does not
answer). Neither prints a traceback, and a rejected command changes nothing in the lab.
"""

import os

import psycopg
import pytest
from psycopg import sql

from pgqueue import queries, server
from pgqueue.queues import labs, single_call
from tests.conftest import run_cli

WORKER_SC = ["worker", "--poc", "single-call", "assigner", "1.0.0"]
WORKER_NL = ["worker", "--poc", "notify-listen", "first_process", "1.0.0"]
SUBMIT_SC = ["submit", "--poc", "single-call", "--pipe"]

# (arguments, what the error line must say)
MISTAKES = [
    (SUBMIT_SC + ["2147483648"], "pipeline id must be a whole number from 1 to 2147483647, got 2147483648"),
    (SUBMIT_SC + ["99999999999999999999999"], "pipeline id must be a whole number from 1 to"),
    (SUBMIT_SC + ["0"], "pipeline id must be a whole number from 1"),
    (SUBMIT_SC + ["-1"], "pipeline id must be a whole number from 1"),
    (SUBMIT_SC + ["1.5"], "pipeline id must be a whole number, got '1.5'"),
    (SUBMIT_SC + ["x"], "pipeline id must be a whole number, got 'x'"),
    (SUBMIT_SC + ["1", "--count", "0"], "count must be a whole number from 1 to 1000000, got 0"),
    (SUBMIT_SC + ["1", "--count", "-3"], "count must be a whole number from 1"),
    (SUBMIT_SC + ["1", "--count", "1e3"], "count must be a whole number, got '1e3'"),
    (SUBMIT_SC + ["1", "--count", "1000001"], "count must be a whole number from 1 to 1000000"),
    (SUBMIT_SC + ["1", "--request", "0"], "request id must be a whole number from 1"),
    (SUBMIT_SC + ["1", "--request", "2147483648"], "request id must be a whole number from 1 to 2147483647"),
    (SUBMIT_SC + ["1", "--priority", "40000"], "priority must be a whole number from -32768 to 32767"),
    (SUBMIT_SC + ["1", "--priority", "-32769"], "priority must be a whole number from -32768 to 32767"),
    (
        ["submit", "--poc", "notify-listen", "--pipe", "1", "--priority", "5"],
        "--priority does not apply to lab",
    ),
    (["submit", "--poc", "sturdy", "--pipe", "1"], "invalid choice: 'sturdy'"),
    ([*WORKER_SC, "--poll", "inf"], "poll must be a finite number of seconds, got 'inf'"),
    ([*WORKER_SC, "--poll=-inf"], "poll must be a finite number of seconds"),
    ([*WORKER_SC, "--poll", "1e308"], "poll must be more than 0 and at most 86400 seconds, got '1e308'"),
    ([*WORKER_SC, "--poll", "nan"], "poll must be a finite number of seconds, got 'nan'"),
    ([*WORKER_SC, "--poll", "-1"], "poll must be more than 0 and at most 86400 seconds, got '-1'"),
    ([*WORKER_SC, "--poll", "0"], "poll must be more than 0"),
    ([*WORKER_SC, "--poll", "soon"], "poll must be a number of seconds, got 'soon'"),
    ([*WORKER_SC, "--work", "3", "1"], "work is (min, max) seconds with min <= max, got (3, 1)"),
    ([*WORKER_SC, "--work", "-1", "1"], "work min must be 0 and at most 86400 seconds, got '-1'"),
    ([*WORKER_SC, "--work", "nan", "1"], "work min must be a finite number of seconds"),
    ([*WORKER_SC, "--work", "0", "inf"], "work max must be a finite number of seconds"),
    ([*WORKER_SC, "--give-up", "0"], "give-up must be more than 0"),
    ([*WORKER_SC, "--give-up", "nan"], "give-up must be a finite number of seconds"),
    ([*WORKER_SC, "--timeout", "3"], "--timeout do(es) not apply to this kind of worker"),
    ([*WORKER_SC, "--uuid", "xyz"], "a process uuid is 12 lowercase hex characters, got 'xyz'"),
    ([*WORKER_SC, "--uuid", "ABCDEF123456"], "a process uuid is 12 lowercase hex characters"),
    ([*WORKER_SC, "--uuid", "abcdef1234567"], "a process uuid is 12 lowercase hex characters"),
    ([*WORKER_NL, "--idle", "nan"], "idle must be a finite number of seconds, got 'nan'"),
    ([*WORKER_NL, "--idle", "0"], "idle must be more than 0"),
    ([*WORKER_NL, "--timeout", "0"], "timeout must be more than 0"),
    ([*WORKER_NL, "--timeout", "1e9"], "timeout must be more than 0 and at most 86400 seconds"),
    ([*WORKER_NL, "--recover", "inf"], "recover must be a finite number of seconds"),
    ([*WORKER_NL, "--recover", "-0.5"], "recover must be more than 0"),
    ([*WORKER_NL, "--retries", "-1"], "retries must be a whole number from 0 to 1000, got -1"),
    ([*WORKER_NL, "--retries", "1.5"], "retries must be a whole number, got '1.5'"),
    ([*WORKER_NL, "--retries", "100000"], "retries must be a whole number from 0 to 1000"),
    ([*WORKER_NL, "--poll", "1"], "--poll do(es) not apply to this kind of worker"),
    (
        ["worker", "--poc", "single-call", "assigner\tx", "1.0.0"],
        "a process name is 1 to 100 printable characters",
    ),
    (
        ["worker", "--poc", "single-call", "assigner\nx", "1.0.0"],
        "a process name is 1 to 100 printable characters",
    ),
    (
        ["worker", "--poc", "single-call", "assigner", "1.0\n"],
        "a process version is 1 to 20 printable characters",
    ),
    (["worker", "--poc", "single-call", " ", "1.0.0"], "a process name is 1 to 100 printable characters"),
    (
        ["worker", "--poc", "single-call", "a" * 101, "1.0.0"],
        "a process name is 1 to 100 printable characters",
    ),
    (
        ["worker", "--poc", "single-call", "assigner", "1" * 21],
        "a process version is 1 to 20 printable characters",
    ),
    (["worker", "--poc", "sturdy", "a", "1"], "invalid choice: 'sturdy'"),
    (["lab", "--port", "-1"], "port must be a whole number from 1 to 65535, got -1"),
    (["lab", "--port", "70000"], "port must be a whole number from 1 to 65535, got 70000"),
    (["lab", "--port", "0"], "port must be a whole number from 1 to 65535, got 0"),
    (["lab", "--port", "http"], "port must be a whole number, got 'http'"),
    (["setup", "--poc", "sturdy"], "invalid choice: 'sturdy'"),
    (["setup", "--poc", "single-call", "--upto", "99"], "no step '99'"),
    (["setup", "--poc", "single-call", "--upto", "nope"], "no step 'nope'"),
    (["setup", "--poc", "notify-listen", "--upto", "04"], "no step '04'"),
    (["kill", "xyz"], "a process uuid is 12 lowercase hex characters, got 'xyz'"),
    (["kill", "ABCDEFABCDEF"], "a process uuid is 12 lowercase hex characters"),
    (["kill", "abcdefabcdef", "--poc", "nope"], "invalid choice: 'nope'"),
    (["demo", "--work", "3", "1"], "work is (min, max) seconds with min <= max, got (3, 1)"),
    (["demo", "--work", "a", "b"], "work min must be a number of seconds, got 'a'"),
    (["demo", "--poll", "nan"], "poll must be a finite number of seconds"),
    (["demo", "--poll", "0"], "poll must be more than 0"),
    (["demo", "--timeout", "inf"], "timeout must be a finite number of seconds"),
    (["demo", "--timeout", "-5"], "timeout must be more than 0"),
    (["db", "url", "--poc", "sturdy"], "invalid choice: 'sturdy'"),
    (["db", "status", "--poc", "single_call"], "invalid choice: 'single_call'"),
    (["status", "--poc", "nope"], "invalid choice: 'nope'"),
]


@pytest.fixture(scope="module")
def built_labs():
    """Both labs with their example data, and a fingerprint of what the single-call lab holds."""
    for poc in ("notify-listen", "single-call"):
        labs.reset(poc, examples=True)
    return _fingerprint()


def _fingerprint() -> tuple:
    with labs.connect("single-call") as conn:
        oid = conn.execute(queries.load("kit/queries.sql")["this_database"]).fetchone()
    return oid, single_call.job_counts(), single_call.pipe_jobs()["pipe_job_id"].tolist()


def _one_line_problem(result, fragment: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pgqueue: error: "), result.stderr
    assert fragment in lines[0]
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize(("args", "says"), MISTAKES, ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_a_mistake_exits_2_with_a_usage_line_and_changes_nothing(built_labs, args, says):
    result = run_cli(*args)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("usage: pgqueue"), result.stderr
    assert "error:" in lines[-1] and says in lines[-1], result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert _fingerprint() == built_labs, "a rejected command changed the single-call lab"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (SUBMIT_SC + ["99"], "lab 'single-call' has no pipeline 99 (it has 1, 2, 3, 4, 5)"),
        (
            ["submit", "--poc", "notify-listen", "--pipe", "7"],
            "lab 'notify-listen' has no pipeline 7 (it has 1, 2)",
        ),
        (
            ["kill", "ffffffffffff"],
            "no worker 'ffffffffffff' has sent a heartbeat in lab(s) notify-listen, single-call",
        ),
        (["kill", "ffffffffffff", "--poc", "single-call"], "in lab(s) single-call"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else "",
)
def test_a_problem_in_the_lab_is_one_line_and_exit_1(built_labs, args, says):
    _one_line_problem(run_cli(*args), says)
    assert _fingerprint() == built_labs


@pytest.mark.parametrize(
    "args",
    [
        ["submit", "--poc", "single-call", "--pipe", "1"],
        ["submit", "--poc", "notify-listen", "--pipe", "1"],
        [*WORKER_SC],
        ["kill", "ffffffffffff"],
    ],
    ids=" ".join,
)
def test_a_lab_never_set_up_is_named_with_the_command_that_builds_it(args):
    # a prefix no database has: as if no lab had ever been set up
    env = {"PGQUEUE_DB_PREFIX": f"pgqueue_t{os.getpid()}_never_"}
    result = run_cli(*args, env=env)
    fragment = "no lab has been set up yet" if args[0] == "kill" else "is not set up yet"
    _one_line_problem(result, fragment)
    if args[0] != "kill":
        assert f"python -m pgqueue setup --poc {args[2]} --examples" in result.stderr


@pytest.mark.parametrize(
    "args",
    [["submit", "--poc", "single-call", "--pipe", "1"], [*WORKER_NL], ["setup", "--poc", "single-call"]],
    ids=" ".join,
)
def test_a_server_that_does_not_answer_is_one_line(args):
    env = {"PGQUEUE_DSN": "postgresql://postgres@127.0.0.1:1/postgres"}
    _one_line_problem(run_cli(*args, env=env), "cannot reach PostgreSQL (host 127.0.0.1, port 1")


SERVICE = "postgresql://postgres@127.0.0.1:5432/postgres"


def _service_answers() -> bool:
    try:
        psycopg.connect(SERVICE, connect_timeout=3).close()
        return True
    except psycopg.OperationalError:
        return False


@pytest.mark.skipif(not _service_answers(), reason="needs the PostgreSQL service on 127.0.0.1:5432 (trust)")
def test_setup_through_a_role_without_createdb_is_one_line():
    role = f"pgqueue_t{os.getpid()}_nocreatedb"
    with psycopg.connect(SERVICE, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN NOCREATEDB").format(sql.Identifier(role)))
        try:
            env = {
                "PGQUEUE_DSN": f"postgresql://{role}@127.0.0.1:5432/postgres",
                "PGQUEUE_DB_PREFIX": role + "_",
            }
            result = run_cli("setup", "--poc", "single-call", env=env)
            _one_line_problem(result, f"role '{role}' may not create databases")
            assert f"ALTER ROLE {role} CREATEDB" in result.stderr
            # a lab another role made: this one may not drop it
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(role + "_single_call")))
            try:
                result = run_cli("setup", "--poc", "single-call", env=env)
                _one_line_problem(result, f"role '{role}' may not drop the lab's database {role}_single_call")
            finally:
                admin.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(role + "_single_call")))
        finally:
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def test_a_home_the_workers_cannot_write_is_one_line_naming_it(tmp_path):
    # the sandbox's demo met this: process workers keep their logs in the kit's home; under a
    # file, even root cannot make it (a server of PGQUEUE_DSN needs no home otherwise)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    home = blocker / "home"
    env = {"PGQUEUE_HOME": str(home), "PGQUEUE_DSN": server.resolve().uri}
    result = run_cli("demo", "--timeout", "30", env=env, timeout=120)
    assert result.returncode == 1, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("pgqueue: error: Not a directory: ") and str(home) in line
    assert line.endswith("(PGQUEUE_HOME moves the kit's files to a folder you may write)")


def test_the_wait_for_the_database_is_checked_before_anything_runs():
    env = {"PGQUEUE_DSN": "postgresql://postgres@127.0.0.1:1/postgres", "PGQUEUE_WAIT_FOR_DB": "soon"}
    result = run_cli("status", env=env)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "pgqueue: error: PGQUEUE_WAIT_FOR_DB must be a number of seconds, got 'soon'"
    )
