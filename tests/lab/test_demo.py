"""`python -m pgqueue demo`: the full example with the launcher's processes, and a report that can fail."""

import os
import time
from pathlib import Path

from pgqueue import queries
from pgqueue.lab import demo, races
from pgqueue.queues import hardened, labs, single_call
from tests.conftest import run_cli, workers_of


def test_demo_finishes_every_pipe_job_respects_the_gate_and_leaves_no_process():
    # a learner's lesson lab, open beside the demo: the demo must not rebuild it
    labs.reset("single-call", examples=True)
    with labs.connect("single-call") as conn:
        conn.execute("CREATE TABLE learners_own_work (note text)")
    lesson_jobs = single_call.pipe_jobs()
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
    with labs.prefixed(demo.LAB_PREFIX) as demo_prefix:
        pipes = single_call.pipe_jobs()
    assert f"database {demo_prefix}single_call" in out and "status --demo" in out
    assert pipes["pipe_job_finished"].all() and len(pipes) == 5
    status = run_cli("status", "--demo", "--poc", "single-call").stdout
    assert "0 waiting, 0 running, 35 finished, 5 pipe_jobs_finished, 5 pipe_jobs" in status
    assert status.count("killed") == 14  # the demo stopped every worker with its kill switch
    # the lesson's lab is as the learner left it: same pipe jobs, none run, their own table kept
    assert single_call.pipe_jobs().equals(lesson_jobs) and not lesson_jobs["pipe_job_finished"].any()
    with labs.connect("single-call") as conn:
        assert conn.execute("SELECT to_regclass('learners_own_work')").fetchone()[0] is not None


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


def test_the_hardened_demo_runs_the_example_and_every_job_succeeds_exactly_once():
    result = run_cli("demo", "--poc", "hardened", "--work", "0", "0.3", "--poll", "0.2", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "started 14 worker processes (12 from the original launcher" in out
    assert "order gates (the design's own: finishers of one request take turns)" in out
    assert "request 50: order 2 (pipe job 2) started" in out and "VIOLATED" not in out
    assert "classification 9.1.0" in out and "no pipeline asks for this version" in out
    assert (
        "attempts: 35 attempts at 35 jobs (0 failed, 0 rescued, 0 running): every job succeeded exactly once"
        in out
    )
    assert out.rstrip().endswith("every pipe job finished and every order gate held")
    assert not workers_of(Path(os.environ["PGQUEUE_HOME"]))
    with labs.prefixed(demo.LAB_PREFIX):  # the demo's own lab
        tried = hardened.attempts()
        # no claim table: the gathered sets are read from the jobs' sets and who succeeded at them
        report = demo.build_report(time.time(), "hardened")
    assert len(tried) == 35 and (tried["outcome"] == "succeeded").all() and tried["job_id"].is_unique
    status = run_cli("status", "--demo", "--poc", "hardened").stdout
    assert "0 waiting, 0 running, 35 finished, 0 dead, 5 pipe_jobs_finished, 5 pipe_jobs" in status
    assert status.count("killed") == 14
    fan_in = report.pipe_jobs.set_index("pipe job")["fan-in"].to_dict()
    assert fan_in == {1: "4", 2: "-", 3: "4", 4: "-", 5: "4"}  # merging_results, movemonitor: sets of 4
    assert report.ok, report.text()


def test_the_hardened_report_counts_rescued_attempts_and_fails_while_jobs_never_succeeded():
    labs.reset("hardened", examples=True)
    lesson = labs.step("hardened", "find_job").lesson
    call = queries.load("clients/hardened.sql")["find_job"]
    lost = {"uuid": "aaaaaaaaaaaa", "server": "test", "name": "first_process", "version": "1.9.2"}
    with labs.connect("hardened") as conn:
        conn.execute(lesson["rescue_after"], {"seconds": 0.5})
        conn.execute(call, {**lost, "multi": False, "batch": 1})
        conn.execute(lesson["age_heartbeat"], {"uuid": lost["uuid"], "seconds": 5})  # as if it died
        conn.execute(
            call, {**lost, "uuid": "bbbbbbbbbbbb", "multi": False, "batch": 1}
        )  # rescues, runs again
    report = demo.build_report(time.time(), "hardened")
    assert report.attempts == (
        "2 attempts at 4 jobs (0 failed, 1 rescued, 1 running): 0 job(s) succeeded more than once, 4 never"
    )
    assert not report.attempts_ok and not report.ok


def test_the_demo_refuses_a_lab_without_pipelines_of_orders_and_an_original_gate_hardened_lacks():
    labs.reset("notify-listen")
    result = run_cli("demo", "--poc", "notify-listen")
    assert result.returncode == 2 and result.stderr.startswith("usage: pgqueue demo"), result.stderr
    assert (
        "lab 'notify-listen' has none (it queues single jobs); choose --poc single-call or --poc hardened"
        in (result.stderr)
    )
    result = run_cli("demo", "--poc", "hardened", "--original-gate")
    assert result.returncode == 2 and "lab 'hardened' has no original gate to keep" in result.stderr
    assert "Traceback" not in result.stderr
