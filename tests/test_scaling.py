"""Lesson 13: workers' connections, a transaction-mode pool, what it breaks, hardened workers through it."""

import pytest

from pgqueue import labs, scaling
from pgqueue.errors import PgQueueError


def test_idle_hardened_workers_hold_one_connection_each():
    found = scaling.idle_workers(4)
    assert found.connections == found.workers == 4, found
    assert found.changes_on == "postmaster"  # max_connections changes only with a restart
    assert found.room_for == found.max_connections - found.reserved


def test_many_clients_of_a_transaction_pool_run_on_its_few_server_connections():
    labs.reset(scaling.POC, examples=True)
    found = scaling.pool_collapse(clients=12, pool_size=2)
    # all twelve in a transaction at once: two inside the server, ten queued in PgBouncer
    assert found.in_server_at_once == 2 and found.finished == 12, found
    assert 1 <= found.backends_seen <= 2 and found.server_connections <= 2, found


def test_a_transaction_pool_hands_session_state_to_other_clients_and_keeps_transaction_locks():
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


def test_hardened_workers_through_a_pool_finish_the_example_on_the_pool_s_connections():
    found = scaling.hardened_through_pool(per_process=2, pool_size=3)
    assert found.pipe_jobs_finished == found.pipe_jobs == 5, found
    # a pool per database and role: the workers' role never had more than the pool's size
    assert found.workers > found.pool_size >= found.most_as_role > 0, found


def test_the_turn_exercise_takes_a_transaction_lock_and_names_what_a_session_lock_leaves():
    labs.reset(scaling.POC, examples=True)
    assert scaling.turn_through_pool("SELECT pg_advisory_xact_lock(%(request_id)s)").holds
    session = scaling.turn_through_pool("SELECT pg_advisory_lock(%(request_id)s)")
    assert not session.holds and "gave up after 2 s" in str(session) and "still held" in str(session), session
    # a row lock on the request's pipe jobs ends with the transaction too (request 50 has two)
    rows = "SELECT 1 FROM pipe_job_queue WHERE request_id = %(request_id)s FOR UPDATE"
    assert scaling.turn_through_pool(rows, request_id=50).holds
    nothing = scaling.turn_through_pool("SELECT %(request_id)s")
    assert not nothing.holds and "went ahead" in str(nothing), nothing
    assert "TODO" in str(scaling.turn_through_pool("SELECT 1 -- TODO"))


def test_bad_input_is_refused_in_one_line_before_anything_starts():
    for call, says in [
        (lambda: scaling.idle_workers(0), "workers is a whole number from 1 to 50, got 0"),
        (lambda: scaling.pool_collapse(clients=0), "clients is a whole number from 1 to 200, got 0"),
        (lambda: scaling.session_features(heard_within=-1), "heard_within is a number of seconds"),
        (lambda: scaling.hardened_through_pool(per_process=0), "per_process is a whole number"),
        (lambda: scaling.turn_through_pool("SELECT 1", request_id=0), "request_id is a whole number"),
    ]:
        with pytest.raises(PgQueueError, match=says):
            call()
