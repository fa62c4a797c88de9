"""Lab databases: one per design, created on first use, reset from sql/ up to a step."""

import threading

import psycopg
import pytest

from pgqueue import PgQueueError, labs, server
from pgqueue.wait import until

HEARTBEATS = """
CREATE TABLE process_heartbeats (
    process_uuid varchar(12) PRIMARY KEY,
    process_kill_switch boolean NOT NULL DEFAULT false
);
"""


def test_each_design_has_its_own_prefixed_database():
    names = {labs.database(poc) for poc in labs.DESIGNS}
    assert len(names) == len(labs.DESIGNS)
    assert all(name.startswith(labs.prefix()) for name in names)


def test_an_unknown_lab_is_refused_with_the_known_names():
    with pytest.raises(PgQueueError, match="unknown lab 'single_call'.*single-call"):
        labs.database("single_call")


def test_a_bad_prefix_is_refused(monkeypatch):
    monkeypatch.setenv(labs.PREFIX_ENV, "Robert'); DROP")
    with pytest.raises(PgQueueError, match="PGQUEUE_DB_PREFIX must be"):
        labs.database("single-call")


def test_ensure_creates_once_and_url_connects(design):
    uri = labs.ensure("single-call")
    assert labs.ensure("single-call") == uri
    with psycopg.connect(uri) as conn:
        assert conn.execute("SELECT current_database()").fetchone()[0] == labs.database("single-call")


def test_reset_rebuilds_from_sql_up_to_a_step_and_drops_old_data(design):
    (design / "01_jobs.sql").write_text("CREATE TABLE jobs (id int);")
    (design / "02_more.sql").write_text("CREATE TABLE more ();")
    labs.reset("single-call")
    with labs.connect("single-call") as conn:
        conn.execute("INSERT INTO jobs VALUES (1)")
    labs.reset("single-call", upto=1)
    with labs.connect("single-call") as conn:
        assert conn.execute("SELECT count(*) FROM jobs").fetchone() == (0,)
        assert conn.execute("SELECT to_regclass('more')").fetchone() == (None,)
    assert labs.apply("single-call", "more") is True
    assert labs.apply("single-call", "more") is False


def test_reset_to_an_unknown_step_changes_nothing(design):
    (design / "01_jobs.sql").write_text("CREATE TABLE jobs (id int);")
    labs.reset("single-call")
    with labs.connect("single-call") as conn:
        conn.execute("INSERT INTO jobs VALUES (7)")
    with pytest.raises(PgQueueError, match="no step 'nope'"):
        labs.reset("single-call", upto="nope")
    with labs.connect("single-call") as conn:
        assert conn.execute("SELECT id FROM jobs").fetchall() == [(7,)]


def test_reset_flips_kill_switches_and_waits_for_workers_to_leave(design):
    (design / "01_heartbeats.sql").write_text(HEARTBEATS)
    labs.reset("single-call")
    with labs.connect("single-call") as conn:
        conn.execute("INSERT INTO process_heartbeats VALUES ('abc123abc123', false)")
    seen_kill = threading.Event()

    def obedient_worker():
        # the protocol a kit worker follows: poll its kill switch, disconnect when it is set
        with labs.connect("single-call", application_name=labs.WORKER_APPLICATION + " t") as conn:
            until(
                lambda: conn.execute("SELECT process_kill_switch FROM process_heartbeats").fetchone()[0],
                30,
                "the kill switch",
                0.05,
            )
            seen_kill.set()

    worker = threading.Thread(target=obedient_worker)
    worker.start()
    until(lambda: _worker_sessions() == 1, 10, "the worker connecting")
    assert labs.stop_workers("single-call", wait=20) == 0
    assert seen_kill.is_set()
    worker.join(5)


def test_reset_disconnects_a_worker_that_ignores_its_kill_switch(design):
    (design / "01_heartbeats.sql").write_text(HEARTBEATS)
    labs.reset("single-call")
    stubborn = labs.connect("single-call", application_name=labs.WORKER_APPLICATION + " stubborn")
    assert labs.stop_workers("single-call", wait=0.2) == 1
    labs.reset("single-call", wait=0.2)
    with pytest.raises(psycopg.OperationalError):
        stubborn.execute("SELECT 1")
    stubborn.close()


def _worker_sessions() -> int:
    with server.connect() as admin:
        return admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND application_name LIKE %s",
            [labs.database("single-call"), labs.WORKER_APPLICATION + "%"],
        ).fetchone()[0]


def test_engine_reads_frames_and_survives_a_reset(design):
    import pandas as pd

    (design / "01_jobs.sql").write_text("CREATE TABLE jobs (id int); INSERT INTO jobs VALUES (1), (2);")
    labs.reset("single-call")
    engine = labs.engine("single-call")
    assert pd.read_sql("SELECT id FROM jobs ORDER BY id", engine)["id"].tolist() == [1, 2]
    labs.reset("single-call")  # drops the database under the engine's pooled connection
    assert len(pd.read_sql("SELECT id FROM jobs", engine)) == 2
    engine.dispose()


def test_reset_to_step_zero_leaves_an_empty_lab_and_frame_reads_queries(design):
    (design / "01_jobs.sql").write_text("CREATE TABLE jobs (id int); INSERT INTO jobs VALUES (3);")
    labs.reset("single-call", upto=0)
    with labs.connect("single-call") as conn:
        assert conn.execute("SELECT to_regclass('jobs')").fetchone() == (None,)
    labs.apply("single-call", 1)
    assert labs.frame("single-call", "SELECT id FROM jobs WHERE id > %(low)s", low=1)["id"].tolist() == [3]
