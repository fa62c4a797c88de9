"""Bloat, measured on a real server: dead versions under churn, a snapshot holding VACUUM back, the
claim's pages, HOT updates and fillfactor, autovacuum settings."""

import pytest

from pgqueue import queries
from pgqueue.errors import PgQueueError
from pgqueue.lab import bloat
from pgqueue.queues import labs

JOBS = 2000


@pytest.fixture
def hardened():
    with labs.scratch("hardened", None, examples=True) as lab, lab.connect() as conn:
        bloat.autovacuum_off(conn)
        yield lab, conn


def test_every_claim_and_finish_leaves_dead_versions_and_the_table_grows(hardened):
    _, conn = hardened
    before = bloat.stats(conn)
    assert bloat.churn(conn, "hardened", JOBS) == JOBS
    after = bloat.stats(conn)
    assert after.dead - before.dead >= 2 * JOBS  # the claim and the finish each left one behind
    assert after.pages >= 10 * before.pages


def test_an_open_snapshot_keeps_dead_versions_until_it_ends(hardened):
    lab, conn = hardened
    with bloat.holding(lab.connect) as holder:
        assert holder.backend_xmin is not None
        assert bloat.holder_activity(conn, holder.pid)["state"] == "idle in transaction"
        bloat.churn(conn, "hardened", JOBS)
        held = bloat.vacuum(conn)
        assert held.not_yet_removable >= 2 * JOBS
        assert bloat.stats(conn).dead >= 2 * JOBS
    bloat.vacuum(conn)
    assert bloat.stats(conn).dead == 0


def test_the_hardened_claim_reads_the_dead_index_entries_until_vacuum(hardened):
    lab, conn = hardened
    with bloat.holding(lab.connect):
        bloat.churn(conn, "hardened", JOBS)
        conn.execute(queries.load("clients/bloat.sql")["add_pipe_jobs"], {"jobs": 1})
        held = bloat.claim_read(conn, "hardened")
    bloat.vacuum(conn)
    clean = bloat.claim_read(conn, "hardened")
    assert held.found == clean.found == 1
    assert "job_queue_waiting" in held.scan and "job_queue_waiting" in clean.scan
    assert held.pages >= 20 * clean.pages, (held, clean)


def test_the_original_pick_reads_every_page_and_vacuum_does_not_shrink_it():
    with labs.scratch("single-call", None, examples=True) as lab, lab.connect() as conn:
        bloat.autovacuum_off(conn)
        bloat.churn(conn, "single-call", JOBS)
        conn.execute(queries.load("clients/bloat.sql")["add_pipe_jobs"], {"jobs": 1})
        dirty = bloat.claim_read(conn, "single-call")
        pages = bloat.stats(conn).pages
        bloat.vacuum(conn)
        clean = bloat.claim_read(conn, "single-call")
    assert dirty.scan == clean.scan == "Seq Scan"
    assert dirty.pages >= pages and clean.pages >= pages  # every page, dead versions or not


def test_hot_updates_need_room_on_the_page_and_an_unindexed_column(hardened):
    _, conn = hardened
    rows = {(r["fillfactor"], r["column updated"]): r for r in bloat.hot_updates(conn, 4000)}
    roomy, full = rows[(70, "touched (no index)")], rows[(100, "touched (no index)")]
    assert roomy["rows updated"] == full["rows updated"] == 1000
    assert roomy["HOT updates"] == 1000
    assert full["HOT updates"] <= 100
    assert rows[(70, "state (indexed)")]["HOT updates"] == rows[(100, "state (indexed)")]["HOT updates"] == 0


def test_dropping_a_day_s_partition_leaves_no_dead_version_and_gives_its_bytes_back(hardened):
    _, conn = hardened
    deleted, dropped = bloat.drop_a_day(conn, 4000)
    assert deleted["rows left"] == dropped["rows left"] == 2000
    assert deleted["dead versions left"] == 2000 and deleted["bytes after"] == deleted["bytes before"]
    assert dropped["dead versions left"] == 0 and dropped["bytes after"] < dropped["bytes before"]


def test_autovacuum_settings_land_in_reloptions(hardened):
    _, conn = hardened
    assert bloat.reloptions(conn) == ["autovacuum_enabled=off"]
    assert bloat.autovacuum_for_a_queue(conn) == [
        "autovacuum_vacuum_scale_factor=0.01",
        "autovacuum_vacuum_threshold=1000",
    ]


def test_bad_input_gets_a_clear_error(hardened):
    _, conn = hardened
    with pytest.raises(PgQueueError, match="notify-listen"):
        bloat.churn(conn, "notify-listen", 10)
    with pytest.raises(PgQueueError, match="got 0"):
        bloat.churn(conn, "hardened", 0)
    with pytest.raises(PgQueueError, match="no table 'nope'"):
        bloat.stats(conn, "nope")
    with pytest.raises(PgQueueError, match="got 1"):
        bloat.drop_a_day(conn, 1)
