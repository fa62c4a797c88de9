"""Lesson 13: workers' connections, a transaction-mode pool, what it breaks, hardened workers through it."""

import ast
import json
import re
from datetime import datetime

import pytest

from pgqueue import check
from pgqueue.check.core import Verdict
from pgqueue.errors import PgQueueError
from pgqueue.lab import scaling
from pgqueue.paths import NOTEBOOKS_DIR
from pgqueue.queues import labs
from pgqueue.server import pooler
from tests import tools

LESSON = NOTEBOOKS_DIR / "13-scale-out.ipynb"


@pytest.fixture
def pgbouncer():
    """A test that starts PgBouncer: skipped where it is missing (failed under PGQUEUE_REQUIRE_TOOLS=1)."""
    tools.require("PgBouncer", pooler.installed(), pooler.INSTALL)


@pytest.fixture
def no_pgbouncer(monkeypatch):
    """PgBouncer missing, as on a machine without it: nothing on PATH, nothing executable in /usr/sbin."""
    monkeypatch.setattr(pooler.shutil, "which", lambda name: None)
    monkeypatch.setattr(pooler.os, "access", lambda path, mode: False)


def test_idle_hardened_workers_hold_one_connection_each():
    found = scaling.idle_workers(4)
    assert found.connections == found.workers == 4, found
    assert found.changes_on == "postmaster"  # max_connections changes only with a restart
    assert found.room_for == found.max_connections - found.reserved


def test_many_clients_of_a_transaction_pool_run_on_its_few_server_connections(pgbouncer):
    labs.reset(scaling.POC, examples=True)
    found = scaling.pool_collapse(clients=12, pool_size=2)
    # all twelve in a transaction at once: two inside the server, ten queued in PgBouncer
    assert found.in_server_at_once == 2 and found.finished == 12, found
    assert 1 <= found.backends_seen <= 2 and found.server_connections <= 2, found


def test_a_transaction_pool_hands_session_state_to_other_clients_and_keeps_transaction_locks(pgbouncer):
    labs.reset(scaling.POC, examples=True)
    found = scaling.session_features()
    # LISTEN stays with the server process: the next client's session listens, the listener hears nothing
    assert found.listening_seen_by_other == [scaling.CHANNEL]
    assert found.heard_direct == ["wake up"] and found.heard_through_pool == []
    # a session-level lock too: another client of the pool "has" it, a direct connection does not
    assert found.other_got_session_lock and not found.direct_got_session_lock
    assert found.lock_held_by == found.pool_backend
    # inside a transaction a client keeps its server connection: transaction-level locks exclude
    assert found.xact_lock_excludes
    # psycopg's automatic prepared statement is missing on the other server connection
    assert "does not exist" in found.prepared_error and found.unprepared_ok


def test_hardened_workers_through_a_pool_finish_the_example_on_the_pool_s_connections(pgbouncer):
    found = scaling.hardened_through_pool(per_process=2, pool_size=3)
    assert found.pipe_jobs_finished == found.pipe_jobs == 5, found
    # a pool per database and role: the workers' role never had more than the pool's size
    assert found.workers > found.pool_size >= found.most_as_role > 0, found


def test_bad_input_is_refused_in_one_line_before_anything_starts():
    for call, says in [
        (lambda: scaling.idle_workers(0), "workers is a whole number from 1 to 50, got 0"),
        (lambda: scaling.pool_collapse(clients=0), "clients is a whole number from 1 to 200, got 0"),
        (lambda: scaling.session_features(heard_within=-1), "heard_within is a number of seconds"),
        (lambda: scaling.hardened_through_pool(per_process=0), "per_process is a whole number"),
    ]:
        with pytest.raises(PgQueueError, match=says):
            call()


def as_the_lesson_asserts(made: scaling.Record) -> None:
    """What lesson 13's cells and its check cells assert, on a record of its run."""
    assert made.calls == scaling.RECORDED_CALLS, "the record ran other arguments than the lesson's calls"
    assert datetime.fromisoformat(made.recorded_at).tzinfo is not None, made.recorded_at
    assert made.machine["cores"] >= 1 and re.fullmatch(r"\d+\.\d+(\.\d+)?", made.pgbouncer), made.pgbouncer
    assert re.fullmatch(r"\d+(\.\d+)?", made.postgresql) and made.server in ("embedded", "dsn")
    collapse, broken, run, turn = made.collapse, made.broken, made.run, made.session_turn
    assert isinstance(collapse, scaling.Collapse) and isinstance(broken, scaling.Broken)
    assert isinstance(run, scaling.PooledRun) and type(turn) is Verdict
    assert collapse.in_server_at_once == collapse.pool_size and collapse.finished == collapse.clients
    assert collapse.server_connections <= collapse.pool_size and 1 <= collapse.backends_seen <= 2
    assert broken.listening_seen_by_other == [scaling.CHANNEL]
    assert broken.heard_direct == ["wake up"] and broken.heard_through_pool == []
    assert broken.other_got_session_lock and not broken.direct_got_session_lock
    assert broken.lock_held_by == broken.pool_backend
    assert broken.xact_lock_excludes and "does not exist" in broken.prepared_error and broken.unprepared_ok
    assert run.pipe_jobs_finished == run.pipe_jobs == 5, run
    assert run.workers > run.pool_size >= run.most_as_role > 0, run
    assert set(run.outcomes) == {"succeeded"}, run.outcomes  # nothing failed or was rescued through the pool
    assert not turn.holds and "gave up after 2 s" in str(turn) and "still held" in str(turn), turn


def test_the_committed_record_loads_into_the_lesson_s_types_and_still_shows_what_it_asserts():
    as_the_lesson_asserts(scaling.Record.load(scaling.RECORD))


def pgbouncer_calls(notebook) -> list[ast.Call]:
    """Every call `bouncer.NAME(...)` the lesson's code cells make."""
    nb = json.loads(notebook.read_text())
    cells = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    return [
        node
        for cell in cells
        for node in ast.walk(ast.parse(cell))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "bouncer"
    ]


def test_the_record_answers_every_call_the_lesson_makes_through_pgbouncer_and_says_it_is_recorded(capsys):
    recorded = scaling.Recorded(scaling.Record.load(scaling.RECORD))
    calls = pgbouncer_calls(LESSON)
    made = {call.func.attr for call in calls}
    assert made == {"version", *scaling.RECORDED_CALLS}, made  # the lesson's cells, one to one
    for call in calls:
        args = [ast.literal_eval(a) for a in call.args]
        kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
        getattr(recorded, call.func.attr)(*args, **kwargs)  # raises if the run never made this call
    said = capsys.readouterr().out.splitlines()
    assert len(said) == len(calls) - 1, said  # one line each, the version's aside
    record = recorded.record
    for line in said:
        assert line.startswith(f"Recorded run ({record.when}, PgBouncer {record.pgbouncer})"), line
        assert "PgBouncer is not installed here (apt-get install pgbouncer" in line and "a live run" in line


def test_a_recorded_run_refuses_in_one_line_what_it_never_ran():
    recorded = scaling.Recorded(scaling.Record.load(scaling.RECORD))
    with pytest.raises(PgQueueError, match=r"has pool_collapse\(clients=12, pool_size=2\) only.*apt-get"):
        recorded.pool_collapse(clients=20, pool_size=2)
    with pytest.raises(PgQueueError, match="has turn_through_pool"):
        recorded.turn_through_pool("SELECT pg_advisory_xact_lock(%(request_id)s)")


def test_a_record_that_is_not_one_is_refused_in_one_line(tmp_path):
    broken = tmp_path / "scale-out.json"
    broken.write_text(json.dumps({"recorded_at": "2025-01-01"}))
    with pytest.raises(PgQueueError, match="is not a record of lesson 13's run.*record PATH writes one"):
        scaling.Record.load(broken)


def test_record_runs_the_lesson_s_experiments_and_saves_what_the_lesson_reads(pgbouncer, tmp_path):
    path = tmp_path / "scale-out.json"
    made = scaling.record(path)
    assert scaling.Record.load(path) == made
    as_the_lesson_asserts(made)
    assert made.pgbouncer == ".".join(map(str, pooler.version()))


def test_without_pgbouncer_the_lesson_reads_the_record_and_the_exercise_says_it_cannot_judge(
    no_pgbouncer, monkeypatch
):
    monkeypatch.delenv(tools.REQUIRE_ENV, raising=False)
    assert isinstance(scaling.bouncer(), scaling.Recorded)
    verdict = check.turn_through_pool("SELECT pg_advisory_xact_lock(%(request_id)s)")
    said = str(verdict)
    assert not verdict.holds and len(said.splitlines()) == 1, said
    assert said.startswith("your turn through the pool was not judged: PgBouncer is not installed"), said
    assert "apt-get install pgbouncer" in said
    monkeypatch.setenv(tools.REQUIRE_ENV, "1")  # CI: the lesson must run live, not from the record
    with pytest.raises(PgQueueError, match="PgBouncer is not installed.*PGQUEUE_REQUIRE_TOOLS=1"):
        scaling.bouncer()


def test_with_pgbouncer_the_lesson_runs_live(pgbouncer):
    live = scaling.bouncer()
    assert isinstance(live, scaling.Live) and live.version() == pooler.version()
    assert "is installed here" in str(live)
