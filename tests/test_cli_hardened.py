"""The command line on the hardened lab: setup, submit, status and kill work there as on the others."""

import subprocess
import sys

from pgqueue.queues import hardened, heartbeats, labs
from pgqueue.wait import until
from tests.conftest import REPO, run_cli

POC = "hardened"


def test_submit_creates_pipe_jobs_and_status_counts_them_with_the_dead_letters():
    result = run_cli("setup", "--poc", POC, "--examples")
    assert result.returncode == 0, result.stderr
    result = run_cli("submit", "--poc", POC, "--pipe", "2", "--count", "2", "--priority", "7")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "pipe job 6 created for pipeline 2",
        "pipe job 7 created for pipeline 2",
    ]
    assert set(hardened.pipe_jobs().set_index("pipe_job_id").loc[[6, 7], "pipe_job_priority"]) == {7}
    result = run_cli("status", "--poc", POC)
    assert result.returncode == 0, result.stderr
    assert f"== lab {POC} (database {labs.database(POC)})" in result.stdout
    assert (
        "jobs:    6 waiting, 0 running, 0 finished, 0 dead, 0 pipe_jobs_finished, 7 pipe_jobs"
        in result.stdout
    )


def test_a_pipe_job_the_hardened_gate_would_never_start_is_refused_in_one_line():
    labs.reset(POC, examples=True)
    result = run_cli("submit", "--poc", POC, "--pipe", "4", "--request", "77")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "pgqueue: error: request 77 has no pipe job of order 1, so its order-2 pipe job would never "
        "start: submit the lower orders first"
    )
    assert result.stdout == "" and len(hardened.pipe_jobs()) == 5  # nothing was made


def test_kill_stops_a_hardened_worker_and_status_says_so():
    labs.reset(POC, examples=True)
    uuid = "abcabcabcabc"
    worker = subprocess.Popen(
        [sys.executable, "-m", "pgqueue", "worker", "--poc", POC, "first_process", "1.9.2"]
        + ["--uuid", uuid, "--poll", "0.5", "--work", "0", "0"],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        until(lambda: uuid in set(heartbeats.states(POC)["process_uuid"]), 60, "the worker's first heartbeat")
        until(lambda: hardened.job_counts()["finished"] == 1, 30, "the worker handing pipe job 4 on")
        result = run_cli("kill", uuid)  # no --poc: kill looks through the labs set up
        assert result.returncode == 0, result.stderr
        assert (
            result.stdout.strip()
            == f"kill switch set for {uuid} in lab {POC}: it exits at its next heartbeat"
        )
        out, err = worker.communicate(timeout=30)
        assert worker.returncode == 0, err
        assert "Traceback" not in out + err
        status = run_cli("status", "--poc", POC).stdout
        assert any(uuid in line and "killed" in line for line in status.splitlines()), status
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)


def test_a_refusal_the_kit_did_not_foresee_is_one_line_with_postgresqls_words():
    labs.reset("hardened", upto="heartbeats", examples=True)  # pipelines, but no queue yet
    result = run_cli("submit", "--poc", "hardened", "--pipe", "2")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pgqueue: error: PostgreSQL refused (42P01): "), lines
    assert "pipe_job_queue" in lines[0] and "Traceback" not in result.stderr
