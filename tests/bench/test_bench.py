"""`python -m pgqueue bench`: every design, the floor and the peers, on the suite's server or a fresh one."""

import contextlib
import json
import os

import psutil
import pytest

from pgqueue import bench, paths, queries, server
from pgqueue.bench import claims, databases, peers, throughput
from pgqueue.errors import PgQueueError
from pgqueue.queues import labs
from tests.conftest import run_cli

# builds every design's lab, and one test starts a fresh embedded server of bench's own
pytestmark = pytest.mark.slow

DSN_SET = bool(os.environ.get("PGQUEUE_DSN"))
FRESH = {databases.FRESH_ENV: "1"}  # the suite runs bench on its own server (conftest.py)


def _bench_databases() -> list[str]:
    pattern = (labs.prefix() + "bench_").replace("_", r"\_") + "%"
    with server.connect() as admin:
        rows = admin.execute(queries.load("kit/queries.sql")["databases_like"], {"pattern": pattern})
        return [row[0] for row in rows]


def _bench_processes() -> list[psutil.Process]:
    """The fresh server's processes (its folder, bench-<pid>, is in their command lines)."""
    folder = f"{paths.home()}/bench-"
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if folder in " ".join(proc.info["cmdline"] or []):
                found.append(proc)
    return found


def test_a_small_run_measures_every_design_the_floor_and_the_peers_into_its_json():
    # one worker process per point: the suite runs beside it, on the same cores; a few wake-ups
    small = {
        "depths": [200, 400],
        "samples": 3,
        "workers": [1],
        "jobs": 20,
        "window": 5,
        "pgbench_seconds": 1,
    }
    report = bench.run(quick=True, wake_samples={"hardened": 3, "notify-listen": 2}, **small)
    run = json.loads(report.to_json())
    # claim cost: every claimer at every depth, with the plan of one claim
    names = [claimer.name for claimer in claims.CLAIMERS]
    assert [(c["claimer"], c["depth"]) for c in run["claim_costs"]] == [
        (n, d) for n in names for d in (200, 400)
    ]
    assert all(c["calls"] == 3 and 0 < c["p50_ms"] <= c["p90_ms"] for c in run["claim_costs"])
    assert {c["design"] for c in run["claim_costs"]} == {"notify-listen", "single-call", "hardened", "floor"}
    assert all("job_queue" in c["plan"] or "floor_queue" in c["plan"] for c in run["claim_costs"])
    # throughput: every design and the floor, and each peer either ran or is named as missing
    ran = {t["runner"] for t in run["throughput"]}
    assert {runner.name for runner in throughput.RUNNERS} <= ran
    for peer in peers.PEERS:
        assert (peer.name in ran) != any(line.startswith(peer.name) for line in run["peers_missing"])
    assert all(t["workers"] == 1 and t["jobs"] > 0 and t["jobs_per_s"] > 0 for t in run["throughput"])
    # 20 jobs drain within 5 s for all but a design that is that slow: it stopped at the window
    assert all(t["drained"] or t["seconds"] >= 5 for t in run["throughput"])
    assert {w["design"] for w in run["wake_ups"]} == {"hardened", "notify-listen"}
    assert all(len(w["all_ms"]) == w["samples"] and w["p50_ms"] > 0 for w in run["wake_ups"])
    assert run["pgbench"] and all(p["tps"] > 0 for p in run["pgbench"])
    assert {g["goal"].split(":")[0] for g in run["goals"]} and all(g["measured"] for g in run["goals"])
    assert run["server"]["version"] and run["machine"]["cores"] >= 1 and run["depths"] == [200, 400]
    assert all(name in report.table() for name in names) and "x the floor" in report.table()
    # it ran on the test run's server (or PGQUEUE_DSN's), and its databases are gone, with every worker
    assert run["server"]["where"] == ("PGQUEUE_DSN" if DSN_SET else "the kit's server")
    assert _bench_databases() == [] and _bench_workers() == []


def test_only_the_scenarios_asked_for_run_on_a_server_of_its_own_that_is_gone_after(tmp_path):
    out = tmp_path / "run.json"
    small = ["--depths", "200,400", "--samples", "3", "--workers", "1", "--jobs", "60", "--window", "5"]
    result = run_cli(
        "bench", "--quick", "--only", "pgbench", *small, "--json", str(out), env=FRESH, timeout=300
    )
    assert result.returncode == 0, result.stderr
    run = json.loads(out.read_text())
    assert run["pgbench"] and not run["claim_costs"] and not run["throughput"] and not run["wake_ups"]
    # the sizes asked for are the run's, and its table and JSON are written
    assert (run["depths"], run["samples"], run["workers"], run["jobs"], run["window"]) == (
        [200, 400],
        3,
        [1],
        60,
        5,
    )
    assert "pgbench, single-row UPDATE" in result.stdout and f"pgqueue: wrote {out}" in result.stdout
    # a server of its own, which is gone; on PGQUEUE_DSN's server, its databases are
    if DSN_SET:
        assert run["server"]["where"] == "PGQUEUE_DSN" and _bench_databases() == []
    else:
        assert run["server"]["where"] == "a fresh embedded server"
        assert not list(paths.home().glob("bench-*")) and _bench_processes() == []


def _bench_workers() -> list[psutil.Process]:
    """Bench worker processes started by this test run (their command line names pgqueue.bench.worker)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "environ"]):
        with contextlib.suppress(psutil.Error):
            cmdline = " ".join(proc.info["cmdline"] or [])
            if "pgqueue.bench.worker" in cmdline and str(paths.home()) in str(proc.info["environ"] or {}):
                found.append(proc)
    return found


def test_a_claim_that_takes_nothing_is_an_error_and_the_failed_run_leaves_nothing_behind():
    idle = claims.Claimer("claims nothing", "floor", 1, lambda conn, who: None)
    with pytest.raises(
        PgQueueError, match="claims nothing at depth 50: 0 jobs were taken by 5 claims, not 5"
    ):
        bench.run(scenarios=("claims",), depths=[50], samples=2, claimers=(idle,))
    # the run had made its floor database when it failed: the server keeps none of it
    assert _bench_databases() == []


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--depths", "1000,100"], "depths must increase, each once"),
        (["--depths", "0"], "a depth must be a whole number from 1 to 10000000, got 0"),
        (["--depths", "1k"], "a depth must be a whole number, got '1k'"),
        (["--samples", "0"], "samples must be a whole number from 1 to 1000, got 0"),
        (["--json", "/no/such/folder/run.json"], "--json: no folder '/no/such/folder'"),
        (
            ["--only", "claims,speed"],
            "a bench scenario is one of claims, throughput, wake-up, pgbench; got 'speed'",
        ),
        (["--only", "claims,claims"], "name each scenario once"),
        (["--workers", "0"], "a worker count must be a whole number from 1 to 32, got 0"),
        (["--jobs", "many"], "jobs must be a whole number, got 'many'"),
        (["--window", "-1"], "window"),
    ],
)
def test_a_mistake_exits_2_with_a_usage_line_before_any_server_starts(args, said):
    result = run_cli("bench", *args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("usage: pgqueue bench") and said in result.stderr
    assert "Traceback" not in result.stderr and not list(paths.home().glob("bench-*"))
