"""Sessions a lesson steps through: a statement that must wait is shown waiting, naming who it waits for."""

import pytest

from pgqueue.errors import PgQueueError
from pgqueue.lab.sessions import Session
from pgqueue.queues import labs

POC = "single-call"
ASK = "SELECT find_job(%(uuid)s, 'srv', 'first_process', '1.9.2', false)"


@pytest.fixture
def two():
    labs.reset(POC, examples=True)
    a, b = Session("A", POC), Session("B", POC)
    yield a, b
    a.close()
    b.close()


def test_a_statement_behind_a_lock_shows_who_holds_it_and_goes_on_at_commit(two):
    a, b = two
    first = a.run(ASK, {"uuid": "aaaaaaaaaaaa"})
    assert first.done and first.rows[0][0].startswith("[")
    second = b.run(ASK, {"uuid": "bbbbbbbbbbbb"}, settle=0.5)
    assert not second.done
    assert repr(second) == "B: waiting for a lock (transactionid) that A holds"
    a.commit()
    assert second.wait().done and second.error is None
    assert repr(a) == f"session A (pid {a.pid}, idle)" and "in a transaction" in repr(b)


def test_a_second_statement_while_one_runs_is_refused_by_name(two):
    a, b = two
    a.run(ASK, {"uuid": "aaaaaaaaaaaa"})
    b.run(ASK, {"uuid": "bbbbbbbbbbbb"}, settle=0.2)
    with pytest.raises(PgQueueError, match="B: its last statement is still running"):
        b.run("SELECT 1")
    a.rollback()


def test_an_error_is_shown_and_a_killed_session_is_gone(two):
    a, b = two
    assert repr(a.run("SELECT no_such_column FROM job_queue")).startswith("A: failed: 42703")
    b.run(ASK, {"uuid": "bbbbbbbbbbbb"})
    b.kill()
    assert "closed" in repr(b)
    with labs.connect(POC) as conn:  # the killed session's transaction rolled back: no job is held
        held = conn.execute("SELECT count(*) FROM job_queue WHERE job_assigned_process_uuid <> ''")
        assert held.fetchone()[0] == 0


def test_a_session_closed_while_its_statement_waits_ends_that_statement_first(two):
    a, b = two
    a.run(ASK, {"uuid": "aaaaaaaaaaaa"})
    waiting = b.run(ASK, {"uuid": "bbbbbbbbbbbb"}, settle=0.2)
    assert not waiting.done
    # closed under a statement its thread still reads from, libpq aborted the whole process
    b.close()
    assert waiting.done and waiting.error.startswith("57014"), waiting.status()  # query_canceled
    assert "closed" in repr(b)
    a.rollback()
