"""Lab databases: one per design, created on first use, reset from sql/ up to a step."""

import os
import signal
import subprocess
import sys
import threading

import psycopg
import pytest

from pgqueue import PgQueueError, server
from pgqueue.queues import designs, heartbeats, labs, schema
from pgqueue.wait import until

HEARTBEATS = """
CREATE TABLE process_heartbeats (
    process_uuid varchar(12) PRIMARY KEY,
    process_kill_switch boolean NOT NULL DEFAULT false
);
"""


def test_each_design_has_its_own_prefixed_database():
    names = {labs.database(poc) for poc in designs.names()}
    assert len(names) == len(designs.names())
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


def test_reset_disconnects_the_labs_workers_and_counts_them(design):
    (design / "01_heartbeats.sql").write_text(HEARTBEATS)
    labs.reset("single-call")
    worker = labs.connect("single-call", application_name=labs.WORKER_APPLICATION + " t")
    notebook = labs.connect("single-call")  # not a worker: not counted, but dropped all the same
    assert labs.worker_sessions("single-call") == 1
    done = labs.reset("single-call")
    assert done.workers_stopped == 1 and done.rebuilt
    for conn in (worker, notebook):
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
        conn.close()


def test_reset_keeping_an_existing_lab_leaves_its_data(design):
    (design / "01_heartbeats.sql").write_text(HEARTBEATS)
    labs.reset("single-call")
    with labs.connect("single-call") as conn:
        conn.execute("INSERT INTO process_heartbeats VALUES ('abc123abc123', false)")
    kept = labs.reset("single-call", keep_existing=True)
    assert not kept.rebuilt and kept.steps == ["01_heartbeats"]
    with labs.connect("single-call") as conn:
        assert conn.execute("SELECT count(*) FROM process_heartbeats").fetchone() == (1,)


def test_two_resets_of_one_lab_take_turns(design):
    (design / "01_heartbeats.sql").write_text(HEARTBEATS + "SELECT pg_sleep(0.5);")
    barrier = threading.Barrier(3)
    results, errors = [], []

    def one_reset():
        barrier.wait()
        try:
            results.append(labs.reset("single-call"))
        except Exception as exc:  # collected: the assert below names it
            errors.append(exc)

    racers = [threading.Thread(target=one_reset) for _ in range(3)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join(60)
    assert not errors and len(results) == 3
    assert labs.is_set_up("single-call")


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


def test_a_worker_started_before_its_lab_is_built_waits_for_the_setup():
    # the sandbox starts its worker containers beside `setup`, not after it
    labs.reset("single-call", upto=0)  # the database exists, nothing is built yet
    worker = subprocess.Popen(
        [sys.executable, "-m", "pgqueue", "worker", "--poc", "single-call", "classification", "1.0.0",
         "--poll", "0.2"],
        env={**os.environ, "PGQUEUE_WAIT_FOR_DB": "60"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert worker.stderr.readline() == "pgqueue: waiting up to 60 s for lab single-call to be set up\n"
        assert worker.poll() is None
        labs.reset("single-call", examples=True)
        until(
            lambda: worker.poll() is not None or "alive" in set(heartbeats.states("single-call")["state"]),
            30,
            "the worker heartbeating",
        )
        assert worker.poll() is None, f"the worker exited {worker.returncode}: {worker.stderr.read()}"
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0, err
    assert "start classification 1.0.0" in out and "stopped on request" in out


def test_waiting_for_a_lab_survives_every_moment_of_a_reset():
    # a waiting worker asks "is it set up?" in two connections (server, then lab); a reset may
    # drop the lab between them, and the lab's connection then fails: that is "not yet", not an error
    labs.reset("single-call", upto=0)
    stop, seen, errors = threading.Event(), [], []

    def ask():
        while not stop.is_set():
            try:
                seen.append(labs._ready("single-call"))
            except Exception as exc:  # noqa: BLE001 - any escape is the failure this test looks for
                errors.append(exc)
                return

    askers = [threading.Thread(target=ask) for _ in range(3)]
    for asker in askers:
        asker.start()
    try:
        for _ in range(8):
            labs.reset("single-call", upto="heartbeats")
            labs.reset("single-call", upto=0)
            if errors:
                break
    finally:
        stop.set()
        for asker in askers:
            asker.join(timeout=30)
    assert not errors, f"a waiting worker would have crashed: {errors[0]!r}"
    assert False in seen and len(seen) > 20, f"the askers hardly ran ({len(seen)} answers)"


def _templates_of(name: str) -> set[str]:
    pattern = name.replace("_", r"\_") + r"\_tpl\_%"
    with server.connect() as admin:
        return {row[0] for row in admin.execute(labs._q()["databases_like"], {"pattern": pattern})}


def _role_exists(role: str) -> bool:
    with server.connect() as admin:
        return bool(admin.execute(labs._q()["roles_like"], {"pattern": role.replace("_", r"\_")}).fetchall())


def test_a_kept_build_is_copied_and_an_edited_step_is_built_afresh(design, monkeypatch):
    monkeypatch.setenv(labs.TEMPLATES_ENV, "1")
    step = design / "01_jobs.sql"
    step.write_text("CREATE TABLE jobs (id int); INSERT INTO jobs VALUES (1);")
    name = labs.database("single-call")
    before = _templates_of(name)
    first = labs.reset("single-call")
    (template,) = _templates_of(name) - before
    with server.connect(template) as conn:  # what a copy would hold; then leave it unconnected
        assert conn.execute("SELECT id FROM jobs").fetchall() == [(1,)]
    with labs.connect("single-call") as conn:
        conn.execute("INSERT INTO jobs VALUES (2)")  # the lab changes, its template does not
    copied = labs.reset("single-call")
    assert copied.steps == first.steps == ["01_jobs"]
    assert labs.frame("single-call", "SELECT id FROM jobs")["id"].tolist() == [1]
    step.write_text("CREATE TABLE jobs (id int); INSERT INTO jobs VALUES (3);")
    labs.reset("single-call")  # a new fingerprint: built from the file, kept beside the old one
    assert labs.frame("single-call", "SELECT id FROM jobs")["id"].tolist() == [3]
    assert len(_templates_of(name) - before) == 2 and template in _templates_of(name)
    # dropping the lab takes its templates too (a server that outlives the run keeps neither)
    assert set(labs.drop("single-call")) >= {name, template}
    assert _templates_of(name) == set() and not labs.exists("single-call")


def test_templates_are_off_unless_asked_and_a_bad_setting_is_refused(design, monkeypatch):
    (design / "01_jobs.sql").write_text("CREATE TABLE jobs (id int, off int);")
    name = labs.database("single-call")
    before = _templates_of(name)
    monkeypatch.setenv(labs.TEMPLATES_ENV, "0")
    labs.reset("single-call")
    assert _templates_of(name) == before
    monkeypatch.setenv(labs.TEMPLATES_ENV, "yes")
    with pytest.raises(PgQueueError, match="PGQUEUE_TEMPLATES is 0 or 1.*'yes'"):
        labs.reset("single-call")


def test_a_scratch_copy_with_its_own_role_is_never_kept_and_its_role_goes(monkeypatch):
    # the hardened design grants its functions to <database>_worker: a template holding those
    # grants would forbid dropping the scratch copy's role
    monkeypatch.setenv(labs.TEMPLATES_ENV, "1")
    base = labs.prefix() + "scratch"
    before = _templates_of(base)
    with labs.scratch("hardened") as copy:
        assert _role_exists(f"{copy.database}_worker")
    assert _templates_of(base) == before
    assert not _role_exists(f"{copy.database}_worker")
    with labs.scratch("hardened", upto="find_job"):  # before the role's step: kept
        pass
    fingerprint = schema.fingerprint(labs.sql_folders("hardened"), "find_job")
    assert f"{base}_tpl_{fingerprint[:10]}" in _templates_of(base)
    with labs.scratch("hardened", upto="find_job") as copy, copy.connect() as conn:
        assert conn.execute("SELECT to_regproc('claim_jobs')").fetchone()[0] is not None


def test_without_a_wait_a_missing_lab_is_one_line_at_once():
    labs.reset("single-call", upto=0)
    with pytest.raises(PgQueueError, match="lab 'single-call' is not set up yet"):
        labs.require_set_up("single-call")
