"""Named queries read from sql/ files."""

import pytest

from pgqueue import PgQueueError, queries


def test_queries_are_read_by_name_in_file_order(tmp_path):
    path = tmp_path / "q.sql"
    path.write_text("-- preamble\n-- name: first\nSELECT 1;\n\n-- name: second\n-- why\nSELECT 2;\n")
    q = queries.Queries(path)
    assert list(q) == ["first", "second"]
    assert q["second"] == "-- why\nSELECT 2;\n"
    assert "```sql" in q["first"]._repr_markdown_()


def test_an_unknown_name_lists_the_known_ones(tmp_path):
    path = tmp_path / "q.sql"
    path.write_text("-- name: only\nSELECT 1;\n")
    with pytest.raises(PgQueueError, match="no query named 'other'.*it has: only"):
        queries.Queries(path)["other"]


def test_a_name_used_twice_is_refused(tmp_path):
    path = tmp_path / "q.sql"
    path.write_text("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;\n")
    with pytest.raises(PgQueueError, match="'a' appears twice"):
        queries.Queries(path)


def test_the_kits_own_queries_load():
    assert "create_database" in queries.load("kit/queries.sql")
    with pytest.raises(PgQueueError, match="no SQL file"):
        queries.load("kit/missing.sql")
