"""Lesson 13's turn checker, beyond its corpus (tests/corpora/l13_turn_through_pool.py)."""

import pytest

from pgqueue.check.turn_through_pool import turn_through_pool
from pgqueue.errors import PgQueueError
from pgqueue.server import pooler
from tests import tools


@pytest.fixture
def pgbouncer():
    """A test that starts PgBouncer: skipped where it is missing (failed under PGQUEUE_REQUIRE_TOOLS=1)."""
    tools.require("PgBouncer", pooler.installed(), pooler.INSTALL)


def test_a_session_lock_is_told_both_what_the_second_client_met_and_what_it_left(pgbouncer):
    session = turn_through_pool("SELECT pg_advisory_lock(%(request_id)s)")
    assert not session.holds and "gave up after 2 s" in str(session) and "still held" in str(session), session


def test_a_row_lock_on_the_request_s_pipe_jobs_ends_with_the_transaction_too(pgbouncer):
    rows = "SELECT 1 FROM pipe_job_queue WHERE request_id = %(request_id)s FOR UPDATE"
    assert turn_through_pool(rows, request_id=50).holds  # request 50 has two pipe jobs


def test_a_todo_in_a_comment_decides_nothing_and_a_try_lock_is_not_called_shared(pgbouncer):
    assert "went ahead" in str(turn_through_pool("SELECT 1 -- TODO"))
    tried = turn_through_pool("SELECT pg_try_advisory_xact_lock(%(request_id)s)")
    assert not tried.holds and "that waits until it is free" in str(tried), tried
    assert "shared" not in str(tried), tried


def test_a_request_id_that_is_not_one_is_refused_in_one_line():
    with pytest.raises(PgQueueError, match="request_id is a whole number"):
        turn_through_pool("SELECT 1", request_id=0)
