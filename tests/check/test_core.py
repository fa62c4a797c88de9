"""The checkers' common ground: scratch labs, excerpts of a step, the learner's SQL installed or refused."""

import inspect

import pytest

from pgqueue import queries, server
from pgqueue.check import core
from pgqueue.check.core import Verdict
from pgqueue.errors import PgQueueError
from pgqueue.queues import labs


def _databases() -> set[str]:
    q = queries.load("kit/queries.sql")
    with server.connect() as admin:
        pattern = labs.prefix().replace("_", r"\_") + "scratch%"
        names = {row[0] for row in admin.execute(q["databases_like"], {"pattern": pattern})}
    # the copies, not the templates they are made from (kept on purpose: PGQUEUE_TEMPLATES)
    return {name for name in names if not name.startswith(labs.prefix() + "scratch_tpl_")}


def test_a_scratch_lab_is_built_to_its_step_and_dropped_even_after_an_error():
    before = _databases()
    with pytest.raises(RuntimeError), labs.scratch("single-call", "find_job") as lab:
        assert lab.database not in before and lab.database in _databases()
        with lab.connect() as conn:
            assert conn.execute("SELECT to_regproc('find_job') IS NOT NULL").fetchone()[0]
            assert conn.execute("SELECT to_regproc('set_pipe_job_priority') IS NULL").fetchone()[0]
        raise RuntimeError("the check went wrong")
    assert _databases() == before


def test_a_scratch_lab_of_an_unknown_step_is_refused_before_any_database_is_made():
    before = _databases()
    with pytest.raises(PgQueueError, match="no step 'nope'"), labs.scratch("single-call", "nope"):
        pass
    assert _databases() == before


def test_an_excerpt_is_one_statement_with_its_comment_and_a_whole_function_body():
    find_job = labs.step("single-call", "find_job").excerpt("find_job")
    assert find_job.startswith("-- The one call a worker makes.")
    assert find_job.rstrip().endswith("END $$;") and find_job.count("CREATE ") == 1
    table = labs.step("single-call", "find_job").excerpt("job_queue_claim")
    assert table.startswith("-- Every claim") and table.rstrip().endswith(");")
    with pytest.raises(PgQueueError, match="creates nothing named 'no_such_thing'"):
        labs.step("single-call", "find_job").excerpt("no_such_thing")


def test_a_checker_is_its_judge_behind_the_one_preamble():
    ran: list[str] = []

    @core.checker("your send_heartbeat", "notify-listen", "heartbeats", replaces=["send_heartbeat"])
    def beats(verdict, lab, conn, text, poc, *, stop=False):
        """What help() shows."""
        ran.append(poc)
        if stop:
            raise core.Refused("stopped from deep inside")
        verdict.held.append("judged")

    reference = labs.step("notify-listen", "heartbeats").excerpt("send_heartbeat")
    assert beats.__doc__ == "What help() shows." and "poc: 'str' = 'notify-listen'" in str(
        inspect.signature(beats)
    )
    assert "there is no SQL yet" in str(beats(" ")) and ran == []  # no lab built, no judge run
    assert "PostgreSQL refused your SQL" in str(beats("SELEC 1;")) and ran == []
    assert beats(reference).holds and ran == ["notify-listen"]
    refused = beats(reference, stop=True)
    assert refused.wrong == ["stopped from deep inside"] and refused.held == [], str(refused)


def test_a_refused_install_leaves_the_reference_in_place_and_quotes_postgresql():
    verdict = Verdict("your send_heartbeat")
    with labs.scratch("notify-listen", "heartbeats") as lab, lab.connect() as conn:
        assert not core.install(
            conn, "CREATE PROCEDURE send_heartbeat(a int LANGUAGE", verdict, replaces=["send_heartbeat"]
        )
        assert conn.execute("SELECT to_regproc('send_heartbeat') IS NOT NULL").fetchone()[0]
    said = 'refused your SQL: syntax error at or near "LANGUAGE", at line 1, column 39 of your SQL:'
    assert said in str(verdict), str(verdict)


def test_an_error_at_the_end_of_input_is_placed_at_the_end_of_the_last_line_written():
    verdict = Verdict("your query")
    with labs.scratch("notify-listen", "heartbeats") as lab, lab.connect() as conn:
        assert not core.install(conn, "SELECT (1\n  + 2\n", verdict)
    assert "at line 2, column 6 of your SQL: '+ 2'" in str(verdict), str(verdict)


def test_a_comment_that_still_says_todo_decides_nothing():
    verdict = Verdict("your thing")
    assert core.written("SELECT 1; -- TODO: done, but the note stayed", verdict) is not None
    assert verdict.wrong == []


def test_sql_that_creates_something_else_is_named():
    verdict = Verdict("your send_heartbeat")
    with labs.scratch("notify-listen", "heartbeats") as lab, lab.connect() as conn:
        wrong = "CREATE PROCEDURE send_beat() LANGUAGE sql AS $$ SELECT 1 $$;"
        assert not core.install(conn, wrong, verdict, replaces=["send_heartbeat"])
    assert "created no send_heartbeat" in str(verdict)


def test_a_verdict_holds_only_when_something_was_checked_and_nothing_failed():
    verdict = Verdict("x")
    assert not verdict.holds
    verdict.expect(True, "held", "wrong")
    assert verdict.holds and "✓ held" in str(verdict) and "holds" in verdict._repr_html_()
    verdict.expect(False, "held", "it broke <here>")
    assert not verdict and "it broke &lt;here&gt;" in verdict._repr_html_()


def test_racers_are_released_together_and_each_result_or_error_comes_back():
    import threading
    import time

    seen: list[float] = []
    lock = threading.Lock()

    def call(i: int) -> int:
        with lock:
            seen.append(time.monotonic())
        if i == 2:
            raise ValueError("racer 2 failed")
        return i * 10

    results = core.together(4, call)
    assert results[:2] == [0, 10] and results[3] == 30
    assert isinstance(results[2], ValueError)
    assert len(seen) == 4


def test_a_scratch_copy_of_the_hardened_lab_takes_its_worker_role_with_it():
    q = queries.load("kit/queries.sql")
    with labs.scratch("hardened", examples=True) as lab:
        role = f"{lab.database}_worker"
        with server.connect() as admin:
            assert admin.execute(q["roles_like"], {"pattern": role}).fetchall() == [(role,)]
    with server.connect() as admin:
        assert admin.execute(q["roles_like"], {"pattern": role}).fetchall() == []
