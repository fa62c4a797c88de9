"""The command line: every verb has --help, mistakes exit 2, `db` verbs do what they say."""

import json
import os
import signal
import subprocess
import sys
import urllib.request

import psutil
import psycopg
import pytest

from pgqueue.cli import build_parser
from pgqueue.queues import designs, labs
from pgqueue.server import embedded
from pgqueue.wait import until
from tests.conftest import REPO, free_port, processes_of, run_cli, start_lab

VERBS = [
    [],
    ["db"],
    ["db", "start"],
    ["db", "stop"],
    ["db", "status"],
    ["db", "url"],
    ["lab"],
    ["setup"],
    ["worker"],
    ["submit"],
    ["status"],
    ["kill"],
    ["demo"],
    ["bench"],
]


@pytest.mark.parametrize("verb", VERBS, ids=lambda v: " ".join(v) or "pgqueue")
def test_every_verb_has_help(verb):
    result = run_cli(*verb, "--help")
    assert result.returncode == 0
    assert result.stdout.startswith("usage: pgqueue")


@pytest.mark.parametrize(
    "args", [["bogus"], ["db", "restart"], ["db", "url", "--poc", "nope"], ["lab", "--port", "x"], []]
)
def test_mistakes_exit_2_with_a_usage_line(args):
    result = run_cli(*args)
    assert result.returncode == 2
    assert result.stderr.startswith("usage: pgqueue")
    assert "error:" in result.stderr.splitlines()[-1]


def test_the_console_script_is_installed():
    script = os.path.join(os.path.dirname(sys.executable), "pgqueue")
    assert subprocess.run([script, "--help"], capture_output=True).returncode == 0


def test_db_url_prints_a_working_uri_of_the_lab():
    labs.reset("single-call")
    result = run_cli("db", "url", "--poc", "single-call")
    assert result.returncode == 0, result.stderr
    uri = result.stdout.strip()
    with psycopg.connect(uri) as conn:
        assert conn.execute("SELECT current_database()").fetchone()[0] == labs.database("single-call")


def test_db_url_says_it_pins_the_server_and_that_a_lab_is_missing(own_home):
    result = run_cli("db", "url", "--poc", "notify-listen")
    assert result.returncode == 0, result.stderr
    assert labs.database("notify-listen") in result.stdout
    assert "pinned: it runs until `python -m pgqueue db stop`" in result.stderr
    assert "lab notify-listen is not set up yet" in result.stderr
    assert "python -m pgqueue setup --poc notify-listen --examples" in result.stderr
    assert not labs.exists("notify-listen"), "db url must not create an empty lab"


def test_the_command_line_offers_exactly_the_designs_in_the_registry():
    parser = build_parser()
    verbs = parser._subparsers._group_actions[0].choices
    offered = {}
    for name, sub in [*verbs.items(), *verbs["db"]._subparsers._group_actions[0].choices.items()]:
        for action in sub._actions:
            if "--poc" in action.option_strings:
                offered[name] = list(action.choices)
    assert set(offered) == {"setup", "worker", "submit", "status", "kill", "url", "demo"}
    assert all(choices == designs.names() for choices in offered.values()), offered


def test_ctrl_c_during_a_long_submit_says_how_many_were_submitted(tmp_path):
    labs.reset("notify-listen", examples=True)
    out = open(tmp_path / "submit.out", "w")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pgqueue",
            "submit",
            "--poc",
            "notify-listen",
            "--pipe",
            "1",
            "--count",
            "100000",
        ],
        cwd=REPO,
        stdout=out,
        stderr=subprocess.PIPE,
        text=True,
    )
    until(lambda: (tmp_path / "submit.out").read_text().count("created") >= 20, 60, "some jobs submitted")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    out.close()
    assert proc.returncode == 130
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pgqueue: interrupted: submitted "), err
    made = int(lines[0].split("submitted ")[1].split(" of ")[0])
    assert lines[0].endswith(" of 100000")
    with labs.connect("notify-listen") as conn:
        assert conn.execute("SELECT count(*) - 1 FROM job_queue").fetchone()[0] == made


def test_db_status_names_the_server_its_version_and_data(own_home):
    before = run_cli("db", "status").stdout
    assert "embedded PostgreSQL 18" in before and "not running" in before
    assert str(own_home.data) in before
    run_cli("db", "start")
    after = run_cli("db", "status", "--poc", "notify-listen").stdout
    assert "running, pid" in after and "pinned:   yes" in after and "watchdog: pid" in after
    assert labs.database("notify-listen") in after


def test_db_stop_leaves_no_postgres_process_of_ours(own_home):
    assert run_cli("db", "url", "--poc", "single-call").returncode == 0
    assert processes_of(own_home.home)
    result = run_cli("db", "stop")
    assert result.returncode == 0 and "stopped the embedded PostgreSQL" in result.stdout
    assert not processes_of(own_home.home)
    assert "was not running" in run_cli("db", "stop").stdout


def test_every_verb_of_the_parser_is_tested_for_help():
    parser = build_parser()
    verbs = parser._subparsers._group_actions[0].choices
    covered = {v[0] for v in VERBS if v}
    assert set(verbs) == covered


def _get(url: str, token: str, method: str = "GET"):
    request = urllib.request.Request(url, method=method, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read() or b"null")


def _answers(url: str, token: str) -> bool:
    try:
        return _get(url, token) is not None
    except OSError:
        return False


def test_lab_serves_the_notebooks_and_ctrl_c_leaves_nothing_running(own_home, tmp_path):
    port, token = free_port(), "pgqueue-test-token"
    log = open(tmp_path / "lab.log", "w")  # noqa: SIM115 (closed in finally) a file, not a pipe, so the log never blocks
    lab = start_lab(port, token, log)
    base = f"http://127.0.0.1:{port}"
    try:
        until(lambda: _answers(f"{base}/api/status", token), 60, "JupyterLab answering")
        assert embedded.status().running, "the lab starts the database before JupyterLab"
        tree = _get(f"{base}/api/contents", token)
        assert "00-start-here.ipynb" in [item["name"] for item in tree["content"]]
        kernel = _get(f"{base}/api/kernels", token, method="POST")
        family = until(
            lambda: [
                p
                for p in psutil.Process(lab.pid).children(recursive=True)
                if "ipykernel" in " ".join(p.cmdline())
            ],
            30,
            "a kernel process",
        )
        assert kernel["id"]
        everything = psutil.Process(lab.pid).children(recursive=True)

        lab.send_signal(signal.SIGINT)  # what Ctrl-C in the terminal sends
        assert lab.wait(40) == 0
        gone, alive = psutil.wait_procs(everything, timeout=10)
        assert not alive, f"left running: {alive}"
        assert family[0] in gone
        until(
            lambda: not processes_of(own_home.home),
            embedded.GRACE_SECONDS + 10,
            "the embedded server stopping after the lab",
        )
    finally:
        if lab.poll() is None:
            lab.kill()
            lab.wait()
        log.close()


def test_setup_rebuilds_a_lab_from_its_steps():
    result = run_cli("setup", "--poc", "notify-listen", "--examples")
    assert result.returncode == 0, result.stderr
    assert "01_pipelines, 01_pipelines.examples, 02_heartbeats" in result.stdout
    result = run_cli("setup", "--poc", "notify-listen", "--upto", "nope")
    assert result.returncode == 2 and "no step 'nope'" in result.stderr


def test_bad_worker_options_are_named_with_their_value():
    result = run_cli("worker", "--poc", "notify-listen", "p", "1", "--work", "2", "1")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "pgqueue worker: error: work is (min, max) seconds with min <= max, got (2, 1)"
    )
    result = run_cli("worker", "--poc", "notify-listen", "p", "1", "--uuid", "NOT-HEX")
    assert result.returncode == 2 and "'NOT-HEX'" in result.stderr


def test_kill_and_status_skip_labs_without_a_schema():
    run_cli("setup", "--poc", "notify-listen")
    for other in designs.names():  # each exists, but nothing is built in it
        if other != "notify-listen":
            labs.reset(other, upto=0)
    result = run_cli("kill", "ffffffffffff")
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        == "pgqueue: error: no worker 'ffffffffffff' has sent a heartbeat in lab(s) notify-listen"
    )
    result = run_cli("status", "--poc", "single-call")
    assert result.returncode == 0 and "not set up yet" in result.stdout


def test_status_of_a_lab_built_only_up_to_its_heartbeats_says_so_in_one_line():
    labs.reset("single-call", upto="heartbeats")  # workers could register; no job table yet
    result = run_cli("status", "--poc", "single-call")
    assert result.returncode == 0, result.stderr
    assert "built only in part" in result.stdout and "setup --poc single-call --examples" in result.stdout


def test_an_order_2_pipe_job_with_no_order_1_work_to_wait_for_is_made_with_a_warning():
    labs.reset("single-call", examples=True)
    result = run_cli("submit", "--poc", "single-call", "--pipe", "4", "--request", "77")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "pipe job 6 created for pipeline 4"
    assert result.stderr.strip() == (
        "pgqueue: warning: pipe job 6 (pipeline 4, order 2) starts when the order-1 pipe jobs of "
        "request 77 finish, and request 77 has none unfinished: it waits until an order-1 pipeline "
        "is submitted for that request and finishes"
    )
    # request 50 still has unfinished order-1 pipe jobs in the example data: no warning
    result = run_cli("submit", "--poc", "single-call", "--pipe", "4", "--request", "50", "--priority", "7")
    assert result.returncode == 0 and result.stderr == "", result.stderr
