"""The bench's figures and plans, from the run lesson 14 reads and from a small hand-made run; no database."""

# ruff: noqa: E501  (the plans below are auto_explain's lines, as long as PostgreSQL writes them)

import pytest

from pgqueue.bench import figures
from pgqueue.bench.inputs import FLOOR
from pgqueue.bench.report import ClaimCost, Report, Throughput, WakeUp
from pgqueue.errors import PgQueueError
from pgqueue.paths import NOTEBOOKS_DIR

SAVED = NOTEBOOKS_DIR / "data" / "bench-full.json"

# auto_explain's text for three statements of one claim, as claims.explain saves it: a heartbeat,
# a rescue that scans job_queue without a Limit, and the pick (a Seq Scan under a Sort and a Limit)
PLAN = """duration: 0.2 ms  plan:
Query Text: INSERT INTO process_heartbeats (process_uuid) VALUES (p_uuid)

Query Parameters: $1 = 'aaaaaaaaaaaa'
Insert on process_heartbeats  (cost=0..1 rows=1 width=4) (actual time=0.1..0.1 rows=0.00 loops=1)
  Buffers: shared hit=9

duration: 0.1 ms  plan:
Query Text: SELECT job_id FROM job_queue WHERE job_assigned_process_uuid IS NOT NULL FOR UPDATE SKIP LOCKED
LockRows  (cost=0..1 rows=1 width=4) (actual time=0..0 rows=0.00 loops=1)
  Buffers: shared hit=2
  ->  Index Scan using job_queue_leased on job_queue  (cost=0..1 rows=1 width=4) (actual time=0..0 rows=7.00 loops=1)
        Buffers: shared hit=2

duration: 9.0 ms  plan:
Query Text: SELECT * FROM job_queue
 WHERE job_finished IS NULL
 ORDER BY job_priority
 LIMIT 1
   FOR UPDATE
Limit  (cost=0..1 rows=1 width=4) (actual time=8.9..8.9 rows=1.00 loops=1)
  Buffers: shared hit=122
  ->  LockRows  (cost=0..1 rows=1 width=4) (actual time=8.9..8.9 rows=1.00 loops=1)
        Buffers: shared hit=122
        ->  Sort  (cost=0..1 rows=1 width=4) (actual time=8.9..8.9 rows=1.00 loops=1)
              Sort Key: job_priority
              Buffers: shared hit=121
              ->  Seq Scan on job_queue  (cost=0..1 rows=1 width=4) (actual time=0.01..4.0 rows=10000.00 loops=1)
                    Filter: (job_finished IS NULL)
                    Rows Removed by Filter: 31
                    Buffers: shared hit=100 read=15
"""

INDEXED = """duration: 0.1 ms  plan:
Query Text: UPDATE floor_queue SET claimed_by = $1
 WHERE id = (SELECT id FROM floor_queue LIMIT 1 FOR UPDATE SKIP LOCKED)
Update on floor_queue  (cost=0..1 rows=1 width=4) (actual time=0..0 rows=1.00 loops=1)
  Buffers: shared hit=12
  InitPlan 1
    ->  Limit  (cost=0..1 rows=1 width=4) (actual time=0..0 rows=1.00 loops=1)
          Buffers: shared hit=4
          ->  LockRows  (cost=0..1 rows=1 width=4) (actual time=0..0 rows=1.00 loops=1)
                Buffers: shared hit=4
                ->  Index Scan using floor_queue_waiting on floor_queue q1  (cost=0..1 rows=1 width=4) (actual time=0..0 rows=1.00 loops=1)
                      Buffers: shared hit=3
  ->  Index Scan using floor_queue_pkey on floor_queue  (cost=0..1 rows=1 width=4) (actual time=0..0 rows=1.00 loops=1)
        Index Cond: (id = (InitPlan 1).col1)
        Buffers: shared hit=7
"""


def hand_made() -> Report:
    """Two claimers at two depths, three runners at two worker counts, two designs woken."""
    costs = [
        ClaimCost("slow", "single-call", 100, 5, 1, 1.0, 1.5, 1.1, PLAN),
        ClaimCost("slow", "single-call", 10_000, 5, 1, 30.0, 40.0, 33.0, PLAN),
        ClaimCost(FLOOR, "floor", 100, 5, 1, 0.5, 0.6, 0.5, INDEXED),
        ClaimCost(FLOOR, "floor", 10_000, 5, 1, 0.5, 0.7, 0.6, INDEXED),
    ]
    throughput = [
        Throughput(runner, design, 1, n, 1000, jobs, 1.0, float(jobs), True)
        for runner, design, rates in [
            ("hardened", "hardened", (100, 150)),
            (FLOOR, "floor", (200, 300)),
            ("pgqueuer 1.6.0, batch of 10", "pgqueuer", (400, 600)),
        ]
        for n, jobs in zip((1, 2), rates, strict=True)
    ]
    wake_ups = [
        WakeUp("hardened", 4, 1.0, 2.0, 3.0, 3.0, [1.0, 1.5, 2.0, 3.0]),
        WakeUp("notify-listen", 2, 500.0, 900.0, 900.0, 900.0, [100.0, 900.0]),
    ]
    return Report(
        machine={"cores": 2}, server={"version": "18.6", "where": "test"}, quick=True, depths=[100, 10_000],
        samples=5, workers=[1, 2], jobs=1000, window=2.0, claim_costs=costs, throughput=throughput,
        wake_ups=wake_ups,
    )  # fmt: skip


@pytest.fixture(scope="module")
def saved() -> Report:
    return Report.load(SAVED)


def test_the_claim_cost_figure_has_a_log_log_line_per_claimer_with_every_depth(saved):
    for report in (saved, hand_made()):
        fig = figures.claim_cost_figure(report)
        claimers = list(dict.fromkeys(c.claimer for c in report.claim_costs))
        assert [trace.name for trace in fig.data] == claimers
        assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"
        for trace in fig.data:
            assert list(trace.x) == report.depths
    slow = figures.claim_cost_figure(hand_made()).data[0]
    assert list(slow.y) == [1.0, 30.0] and slow.line.dash == "solid"


def test_growth_is_the_deepest_cost_over_the_first():
    assert figures.growth(hand_made(), "slow") == 30.0
    assert figures.growth(hand_made(), FLOOR) == 1.0


def test_a_claimer_or_depth_the_run_lacks_is_an_error_naming_what_it_has():
    with pytest.raises(
        PgQueueError, match=r"no claim cost for 'fast' at depth 100; its claimers: slow, floor"
    ):
        figures.cost(hand_made(), "fast", 100)


def test_the_throughput_figure_has_a_line_per_runner_and_its_ratio_to_the_floor(saved):
    for report in (saved, hand_made()):
        fig = figures.throughput_figure(report)
        assert [trace.name for trace in fig.data] == list(dict.fromkeys(t.runner for t in report.throughput))
        assert fig.layout.yaxis.type == "log"
        assert all(list(trace.x) == report.workers for trace in fig.data)
    fig = figures.throughput_figure(hand_made())
    hardened, floor, peer = fig.data
    assert list(hardened.y) == [100, 150] and [row[0] for row in hardened.customdata] == [
        "0.50x the floor",
        "0.50x the floor",
    ]
    assert (hardened.line.dash, floor.line.dash, peer.line.dash) == ("solid", "dot", "dash")


def test_the_wake_up_figure_has_every_sample_of_every_design_on_a_log_axis(saved):
    for report in (saved, hand_made()):
        fig = figures.wake_up_figure(report)
        assert [trace.name for trace in fig.data] == [w.design for w in report.wake_ups]
        assert fig.layout.xaxis.type == "log"
        for trace, wake in zip(fig.data, report.wake_ups, strict=True):
            assert sorted(trace.x) == sorted(wake.all_ms)


def test_the_pick_is_the_statement_that_scans_the_queue_under_a_limit():
    picked = figures.pick(PLAN)
    assert picked.startswith("duration: 9.0 ms") and "Seq Scan on job_queue" in picked
    assert "process_heartbeats" not in picked and "job_queue_leased" not in picked  # the rescue has no Limit
    assert figures.rows_read(picked) == 10_031 and figures.pages_read(picked) == 115
    # the floor's: the scan under the Limit chooses; the UPDATE's scan by id after it does not count
    floor = figures.plan_of(hand_made(), FLOOR, 100)
    assert floor == INDEXED.strip()
    assert figures.rows_read(floor, "floor_queue") == 1 and figures.pages_read(floor, "floor_queue") == 3


def test_a_plan_without_a_pick_is_an_error():
    with pytest.raises(PgQueueError, match="no plan saved"):
        figures.pick("")
    with pytest.raises(PgQueueError, match="scans job_queue under a Limit"):
        figures.pick(PLAN.split("\n\nduration: 9.0")[0])


def test_the_saved_run_has_a_pick_of_its_queue_for_every_claimer_at_every_depth(saved):
    for c in saved.claim_costs:
        table = "floor_queue" if c.design == "floor" else "job_queue"
        picked = figures.plan_of(saved, c.claimer, c.depth)
        assert f" on {table}" in picked and "Limit" in picked
        assert figures.rows_read(picked, table) >= c.jobs_per_call and figures.pages_read(picked, table) > 0


def test_the_picks_table_has_a_row_per_claimer_in_the_runs_order_and_a_column_per_depth(saved):
    table = figures.picks(hand_made())
    assert list(table.index) == [("slow", "Seq Scan"), (FLOOR, "Index Scan using floor_queue_waiting")]
    assert table.loc[("slow", "Seq Scan"), ("rows read", 10_000)] == 10_031
    assert table.loc[(FLOOR, "Index Scan using floor_queue_waiting"), ("pages read", 100)] == 3
    saved_table = figures.picks(saved)
    assert list(saved_table.index.get_level_values("claimer")) == list(
        dict.fromkeys(c.claimer for c in saved.claim_costs)
    )
    assert list(saved_table["rows read"].columns) == saved.depths


def test_statements_lists_what_one_claim_ran_one_line_each():
    assert figures.statements(PLAN) == [
        "INSERT INTO process_heartbeats (process_uuid) VALUES (p_uuid)",
        "SELECT job_id FROM job_queue WHERE job_assigned_process_uuid IS NOT NULL FOR UPDATE SKIP LOCKED",
        "SELECT * FROM job_queue",
    ]
    assert figures.statements(INDEXED) == ["UPDATE floor_queue SET claimed_by = $1"]
