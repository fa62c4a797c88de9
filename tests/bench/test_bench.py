"""`python -m pgqueue bench`: every design, the floor and the installed peers, on a server of its own."""

import contextlib
import json
import os

import psutil
import pytest

from pgqueue import bench, paths, queries, server
from pgqueue.bench import peers
from pgqueue.errors import PgQueueError
from tests.conftest import run_cli

# starts a fresh embedded server of its own, and builds every design's lab there
pytestmark = pytest.mark.slow

DSN_SET = bool(os.environ.get("PGQUEUE_DSN"))


def _bench_databases() -> list[str]:
    pattern = bench.PREFIX.replace("_", r"\_") + "%"
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


def test_a_small_run_measures_every_design_the_floor_and_the_peers_and_writes_its_json(tmp_path):
    out = tmp_path / "run.json"
    # one worker process per point: the suite runs beside it, on the same cores
    small = ["--depths", "200,400", "--samples", "3", "--workers", "1", "--jobs", "60", "--window", "5"]
    result = run_cli("bench", "--quick", *small, "--json", str(out), timeout=600)
    assert result.returncode == 0, result.stderr
    run = json.loads(out.read_text())
    # claim cost: every claimer at every depth, with the plan of one claim
    names = [claimer.name for claimer in bench.CLAIMERS]
    assert [(c["claimer"], c["depth"]) for c in run["claim_costs"]] == [
        (n, d) for n in names for d in (200, 400)
    ]
    assert all(c["calls"] == 3 and 0 < c["p50_ms"] <= c["p90_ms"] for c in run["claim_costs"])
    assert {c["design"] for c in run["claim_costs"]} == {"notify-listen", "single-call", "hardened", "floor"}
    assert all("job_queue" in c["plan"] or "floor_queue" in c["plan"] for c in run["claim_costs"])
    # throughput: every design and the floor, and each peer either ran or is named as missing
    ran = {t["runner"] for t in run["throughput"]}
    assert {runner.name for runner in bench.RUNNERS} <= ran
    for peer in peers.PEERS:
        assert (peer.name in ran) != any(line.startswith(peer.name) for line in run["peers_missing"])
    assert all(t["workers"] == 1 and t["jobs"] > 0 and t["jobs_per_s"] > 0 for t in run["throughput"])
    # 60 jobs drain within 5 s for all but a design that is that slow: it stopped at the window
    assert all(t["drained"] or t["seconds"] >= 5 for t in run["throughput"])
    assert {w["design"] for w in run["wake_ups"]} == {"hardened", "notify-listen"}
    assert all(len(w["all_ms"]) == w["samples"] and w["p50_ms"] > 0 for w in run["wake_ups"])
    assert run["pgbench"] and all(p["tps"] > 0 for p in run["pgbench"])
    assert {g["goal"].split(":")[0] for g in run["goals"]} and all(g["measured"] for g in run["goals"])
    assert run["server"]["version"] and run["machine"]["cores"] >= 1 and run["depths"] == [200, 400]
    assert all(name in result.stdout for name in names) and "x the floor" in result.stdout
    # it ran on a server of its own, which is gone, with every worker; on a shared server, its databases are
    if DSN_SET:
        assert run["server"]["where"] == "PGQUEUE_DSN" and _bench_databases() == []
    else:
        assert run["server"]["where"] == "a fresh embedded server"
        assert not list(paths.home().glob("bench-*")) and _bench_processes() == []
    assert _bench_workers() == []


def test_only_the_scenarios_asked_for_run(tmp_path):
    out = tmp_path / "run.json"
    result = run_cli("bench", "--quick", "--only", "pgbench", "--json", str(out), timeout=300)
    assert result.returncode == 0, result.stderr
    run = json.loads(out.read_text())
    assert run["pgbench"] and not run["claim_costs"] and not run["throughput"] and not run["wake_ups"]


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
    idle = bench.Claimer("claims nothing", "floor", 1, lambda conn, who: None)
    with pytest.raises(
        PgQueueError, match="claims nothing at depth 50: 0 jobs were taken by 5 claims, not 5"
    ):
        bench.run(scenarios=("claims",), depths=[50], samples=2, claimers=(idle,))
    # the run had made its floor database when it failed: a shared server keeps none of it
    if DSN_SET:
        assert _bench_databases() == []
    else:
        assert not list(paths.home().glob("bench-*")) and _bench_processes() == []


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
