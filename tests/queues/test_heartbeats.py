"""Heartbeat states: alive, stale, stopped (a clean exit said so) and killed, in SQL terms."""

import pytest

from pgqueue.queues import heartbeats, labs
from pgqueue.queues.heartbeats import Identity

POC = "notify-listen"


@pytest.fixture
def conn():
    """A lab built up to the heartbeats step (both queue designs share it)."""
    labs.reset(POC, upto="heartbeats")
    with labs.connect(POC) as connection:
        yield connection


def state(conn, who: Identity, stale_after: str = "10 seconds") -> str:
    return conn.execute(
        "SELECT state FROM process_states(%s::interval) WHERE process_uuid = %s", [stale_after, who.uuid]
    ).fetchone()[0]


def row(conn, who: Identity) -> tuple:
    return conn.execute(
        "SELECT process_busy, process_stopped_timestamp IS NOT NULL FROM process_heartbeats"
        " WHERE process_uuid = %s",
        [who.uuid],
    ).fetchone()


def test_a_clean_stop_shows_as_stopped_until_the_next_beat(conn):
    who = Identity.new("first_process", "1.0.0")
    heartbeats.send_heartbeat(conn, who)
    assert state(conn, who) == "alive"
    conn.execute("UPDATE process_heartbeats SET process_busy = true")  # it stopped during a job
    heartbeats.mark_stopped(conn, who.uuid)
    assert state(conn, who) == "stopped" and row(conn, who) == (False, True)
    heartbeats.send_heartbeat(conn, who)  # the same process beats again: it is back
    assert state(conn, who) == "alive" and row(conn, who) == (False, False)


def test_stopped_wins_over_stale_and_killed_wins_over_stopped(conn):
    quitter, killed = Identity.new("first_process", "1.0.0"), Identity.new("first_process", "1.0.0")
    for who in (quitter, killed):
        heartbeats.send_heartbeat(conn, who)
        heartbeats.mark_stopped(conn, who.uuid)
    heartbeats.set_kill_switch(POC, killed.uuid)  # an operator's kill, obeyed: it exited after
    assert state(conn, quitter, "0 seconds") == "stopped"  # not stale: it said it went
    assert state(conn, killed) == "killed"
    states = heartbeats.states(POC).set_index("process_uuid")
    assert states.loc[killed.uuid, ["state", "exited"]].tolist() == ["killed", True]
    assert states.loc[quitter.uuid, ["state", "exited"]].tolist() == ["stopped", True]
