"""`python -m pgqueue bench`: claim cost per depth for every design and the floor, on a server of its own."""

import contextlib
import json
import os

import psutil
import pytest

from pgqueue import bench, labs, paths, queries, server
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


def test_a_small_run_times_every_claimer_at_every_depth_and_writes_its_json(tmp_path):
    out = tmp_path / "run.json"
    result = run_cli("bench", "--depths", "200,400", "--samples", "3", "--json", str(out), timeout=300)
    assert result.returncode == 0, result.stderr
    run = json.loads(out.read_text())
    names = [claimer.name for claimer in bench.CLAIMERS]
    assert [(c["claimer"], c["depth"]) for c in run["claim_costs"]] == [
        (n, d) for n in names for d in (200, 400)
    ]
    assert all(c["calls"] == 3 and 0 < c["p50_ms"] <= c["p90_ms"] for c in run["claim_costs"])
    assert {c["design"] for c in run["claim_costs"]} == {"notify-listen", "single-call", "hardened", "floor"}
    assert run["server"]["version"] and run["machine"]["cores"] >= 1 and run["depths"] == [200, 400]
    assert all(name in result.stdout for name in names) and "deepest/first" in result.stdout
    # it ran on a server of its own, which is gone; on a shared server, its databases are
    if DSN_SET:
        assert run["server"]["where"] == "PGQUEUE_DSN" and _bench_databases() == []
    else:
        assert run["server"]["where"] == "a fresh embedded server"
        assert not list(paths.home().glob("bench-*")) and _bench_processes() == []


def test_a_claim_that_takes_nothing_is_an_error_not_a_fast_number(monkeypatch):
    monkeypatch.setenv(labs.PREFIX_ENV, labs.prefix() + "b_")
    idle = bench.Claimer("claims nothing", "floor", 1, lambda conn, who: None)
    with pytest.raises(
        PgQueueError, match="claims nothing at depth 50: 0 jobs were taken by 5 claims, not 5"
    ):
        bench.claim_costs([50], 2, claimers=(idle,))


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--depths", "1000,100"], "depths must increase, each once"),
        (["--depths", "0"], "a depth must be a whole number from 1 to 10000000, got 0"),
        (["--depths", "1k"], "a depth must be a whole number, got '1k'"),
        (["--samples", "0"], "samples must be a whole number from 1 to 1000, got 0"),
        (["--json", "/no/such/folder/run.json"], "--json: no folder '/no/such/folder'"),
    ],
)
def test_a_mistake_exits_2_with_a_usage_line_before_any_server_starts(args, said):
    result = run_cli("bench", *args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("usage: pgqueue bench") and said in result.stderr
    assert "Traceback" not in result.stderr and not list(paths.home().glob("bench-*"))
