"""Named queries read from sql/ files."""

import os
import shutil
import subprocess
import sys

import pytest

from pgqueue import PgQueueError, paths, queries
from tests.conftest import REPO


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


def test_an_edited_file_is_read_again(monkeypatch, tmp_path):
    (tmp_path / "clients").mkdir()
    path = tmp_path / "clients" / "mine.sql"
    path.write_text("-- name: answer\nSELECT 1;\n")
    monkeypatch.setattr(paths, "SQL_DIR", tmp_path)
    assert queries.load("clients/mine.sql")["answer"] == "SELECT 1;\n"
    assert queries.load("clients/mine.sql") is queries.load("clients/mine.sql")  # unchanged: not read again
    path.write_text("-- name: answer\nSELECT 42;\n")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    assert queries.load("clients/mine.sql")["answer"] == "SELECT 42;\n"


def test_a_package_installed_without_its_sql_says_so_in_one_line(tmp_path):
    # what `pip install .` makes: the package alone, no sql/ beside it
    shutil.copytree(REPO / "pgqueue", tmp_path / "pgqueue", ignore=shutil.ignore_patterns("__pycache__"))
    result = subprocess.run(
        [sys.executable, "-m", "pgqueue", "setup", "--poc", "single-call"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "the kit's SQL is missing" in lines[0], result.stderr
    assert "pip install -r requirements.txt" in lines[0] and "pip wheel ." in lines[0]
