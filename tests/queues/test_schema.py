"""Schema steps: found in order, applied once, refused when malformed or edited."""

import psycopg
import pytest

from pgqueue import PgQueueError, server
from pgqueue.queues import schema


def write(folder, name, text):
    (folder / name).write_text(text)


def test_steps_are_ordered_by_number_not_by_text(tmp_path):
    for name in ["10_tenth.sql", "02_second.sql", "01_first.sql"]:
        write(tmp_path, name, "SELECT 1;")
    assert [s.key for s in schema.steps(tmp_path)] == ["01_first", "02_second", "10_tenth"]


@pytest.mark.parametrize("bad", ["1_short.sql", "01-dash.sql", "01_Upper.sql", "first.sql"])
def test_a_misnamed_file_is_refused_by_name(tmp_path, bad):
    write(tmp_path, bad, "SELECT 1;")
    with pytest.raises(PgQueueError, match=bad.replace(".", r"\.")):
        schema.steps(tmp_path)


def test_two_files_with_one_number_are_refused(tmp_path):
    write(tmp_path, "03_a.sql", "")
    write(tmp_path, "03_b.sql", "")
    with pytest.raises(PgQueueError, match="two steps numbered 03: .*03_a.sql.*03_b.sql"):
        schema.steps(tmp_path)


def test_a_step_is_found_by_number_name_or_key(tmp_path):
    write(tmp_path, "03_heartbeats.sql", "SELECT 1;")
    for which in [3, "3", "03", "heartbeats", "03_heartbeats"]:
        assert schema.find(tmp_path, which).key == "03_heartbeats"
    with pytest.raises(PgQueueError, match="no step 'beats' \\(steps: 03_heartbeats\\)"):
        schema.find(tmp_path, "beats")


def test_step_displays_its_sql_in_a_notebook(tmp_path):
    write(tmp_path, "01_t.sql", "CREATE TABLE t (id int);\n")
    markdown = schema.find(tmp_path, 1)._repr_markdown_()
    assert markdown.startswith(f"**sql/{tmp_path.name}/01_t.sql**")
    assert "```sql\nCREATE TABLE t (id int);\n```" in markdown


def test_applying_a_step_twice_is_harmless(tmp_path, fresh_db):
    write(tmp_path, "01_t.sql", "CREATE TABLE t (id int); INSERT INTO t VALUES (1);")
    with server.connect(fresh_db) as conn:
        assert schema.apply_upto(conn, tmp_path) == schema.steps(tmp_path)
        assert schema.apply_upto(conn, tmp_path) == []
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (1,)


def test_apply_upto_stops_at_the_named_step(tmp_path, fresh_db):
    write(tmp_path, "01_a.sql", "CREATE TABLE a ();")
    write(tmp_path, "02_b.sql", "CREATE TABLE b ();")
    write(tmp_path, "03_c.sql", "CREATE TABLE c ();")
    with server.connect(fresh_db) as conn:
        ran = schema.apply_upto(conn, tmp_path, "b")
        assert [s.key for s in ran] == ["01_a", "02_b"]
        assert conn.execute("SELECT to_regclass('c')").fetchone() == (None,)
        assert list(schema.applied(conn)) == ["01_a", "02_b"]


def test_a_failing_step_leaves_nothing_behind(tmp_path, fresh_db):
    write(tmp_path, "01_bad.sql", "CREATE TABLE half (id int); SELECT no_such_function();")
    with server.connect(fresh_db) as conn:
        with pytest.raises(psycopg.errors.UndefinedFunction):
            schema.apply_upto(conn, tmp_path)
        assert conn.execute("SELECT to_regclass('half')").fetchone() == (None,)
        assert schema.applied(conn) == {}


def test_an_edited_step_is_refused_until_the_lab_is_reset(tmp_path, fresh_db):
    write(tmp_path, "01_t.sql", "CREATE TABLE t (id int);")
    with server.connect(fresh_db) as conn:
        schema.apply_upto(conn, tmp_path)
        write(tmp_path, "01_t.sql", "CREATE TABLE t (id bigint);")
        with pytest.raises(PgQueueError, match="changed since this database ran it"):
            schema.apply_upto(conn, tmp_path)


def test_companions_attach_to_their_step(tmp_path):
    write(tmp_path, "01_t.sql", "CREATE TABLE t (id int);")
    write(tmp_path, "01_t.examples.sql", "INSERT INTO t VALUES (1);")
    write(tmp_path, "01_t.lesson.sql", "-- name: count\nSELECT count(*) FROM t;\n")
    (step,) = schema.steps(tmp_path)
    assert step.examples.name == "01_t.examples.sql"
    assert list(step.lesson) == ["count"]


def test_a_companion_without_its_step_is_refused(tmp_path):
    write(tmp_path, "01_t.sql", "")
    write(tmp_path, "01_other.examples.sql", "")
    with pytest.raises(PgQueueError, match="has no step 01_other.sql"):
        schema.steps(tmp_path)


def test_examples_run_only_when_asked_and_only_once(tmp_path, fresh_db):
    write(tmp_path, "01_t.sql", "CREATE TABLE t (id int);")
    write(tmp_path, "01_t.examples.sql", "INSERT INTO t VALUES (1);")
    with server.connect(fresh_db) as conn:
        schema.apply_upto(conn, tmp_path)
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
        assert schema.apply_upto(conn, tmp_path, examples=True) == schema.steps(tmp_path)
        assert schema.apply_upto(conn, tmp_path, examples=True) == []
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (1,)


def test_a_fix_runs_only_when_asked_after_its_step_and_only_once(tmp_path, fresh_db):
    write(tmp_path, "01_t.sql", "CREATE TABLE t (id int);")
    write(tmp_path, "01_t.fix.sql", "ALTER TABLE t ADD CHECK (id > 0);")
    (step,) = schema.steps(tmp_path)
    assert step.fix_path.name == "01_t.fix.sql" and "ADD CHECK" in step.fix_sql
    with server.connect(fresh_db) as conn:
        schema.apply_upto(conn, tmp_path)
        assert "01_t.fix" not in schema.applied(conn)
        conn.execute("INSERT INTO t VALUES (0)")  # the original takes it
        conn.execute("DELETE FROM t")
        assert schema.apply_upto(conn, tmp_path, fixes=True) == [step]
        assert schema.apply_upto(conn, tmp_path, fixes=True) == []
        assert list(schema.applied(conn)) == ["01_t", "01_t.fix"]
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("INSERT INTO t VALUES (0)")


def test_steps_of_several_folders_merge_and_a_later_companion_wins(tmp_path):
    shared, own = tmp_path / "shared", tmp_path / "own"
    shared.mkdir()
    own.mkdir()
    write(shared, "01_model.sql", "")
    write(shared, "01_model.examples.sql", "-- shared examples")
    write(own, "01_model.examples.sql", "-- the design's own examples")
    write(own, "02_queue.sql", "")
    found = schema.steps([shared, own])
    assert [s.key for s in found] == ["01_model", "02_queue"]
    assert found[0].examples == own / "01_model.examples.sql"
    write(own, "01_other.sql", "")
    with pytest.raises(PgQueueError, match="two steps numbered 01"):
        schema.steps([shared, own])
