"""`python -m pgqueue demo`: the full example with the launcher's processes, and a report that can fail."""

import os
import time
from pathlib import Path

from pgqueue import demo, labs, races, single_call
from tests.conftest import run_cli, workers_of


def test_demo_finishes_every_pipe_job_respects_the_gate_and_leaves_no_process():
    # values typed on the command line, as the sandbox's demo service passes them
    result = run_cli("demo", "--work", "0", "0.3", "--poll", "0.2", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "started 14 worker processes (12 from the original launcher" in out
    assert "request 50: order 2 (pipe job 2) started" in out and "VIOLATED" not in out
    assert "order gates (the original's, with lesson 07's fix" in out
    assert "classification 9.1.0" in out and "no pipeline asks for this version" in out
    assert "assigner 1.0.0 took pipe jobs 1 (priority 100), 5 (priority 100), 3 (priority 200)" in out
    assert out.rstrip().endswith("every pipe job finished and every order gate held")
    assert not workers_of(Path(os.environ["PGQUEUE_HOME"]))
    pipes = single_call.pipe_jobs()
    assert pipes["pipe_job_finished"].all() and len(pipes) == 5
    status = run_cli("status", "--poc", "single-call").stdout
    assert "0 waiting, 0 running, 35 finished, 5 pipe_jobs_finished, 5 pipe_jobs" in status
    assert status.count("killed") == 14  # the demo stopped every worker with its kill switch


def test_the_report_flags_an_order_gate_that_did_not_hold():
    labs.reset("single-call", examples=True)
    with labs.connect("single-call") as conn:
        # pretend request 50's order-2 pipe job started before its order-1 pipe jobs ended
        conn.execute("CALL create_entry_job(2, 4, 90::smallint, '{}')")
        conn.execute(
            "UPDATE pipe_job_queue SET pipe_job_finished = true,"
            " pipe_job_finish_timestamp = clock_timestamp() + interval '1 minute'"
            " WHERE pipe_job_id IN (1, 4)"
        )
    report = demo.build_report(time.time())
    assert not report.gates_ok and not report.ok
    assert any(line.startswith("request 50: order 2 (pipe job 2) VIOLATED") for line in report.gates)


def test_the_report_names_a_request_stalled_by_the_gate_race():
    labs.reset("single-call", examples=True)
    # request 50's two order-1 pipe jobs finish at the same moment (the forced schedule)
    assert not races.order_gate_race(1, 4, waiting=2).started
    report = demo.build_report(time.time())
    (line,) = [g for g in report.gates if g.startswith("request 50")]
    assert "order 2 (pipe job 2) STALLED: its order-1 pipe jobs 1, 4 finished" in line
    assert "the race of lesson 07" in line
    assert report.gates_ok and not report.all_finished  # a stall is not a violation, but it never ends
