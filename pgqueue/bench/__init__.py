"""`python -m pgqueue bench`: what each design costs and how that grows, beside the floor and the peers.

Every design runs in its own lab database on one server (databases.own_server), in one run, so
the ratios between them are fair. Four scenarios, a module each: claims (what one claim costs
at each queue depth), throughput (1-8 worker processes released together), wake_up (how long a
job waits for an idle worker) and pgbench; report holds what they measured, its tables and goals.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from pgqueue import server
from pgqueue.bench import inputs

if TYPE_CHECKING:
    from pgqueue.bench.claims import Claimer
    from pgqueue.bench.report import Report
    from pgqueue.bench.throughput import Runner


def run(
    *,
    quick: bool = False,
    scenarios: tuple[str, ...] = inputs.SCENARIOS,
    claimers: tuple[Claimer, ...] | None = None,
    runners: tuple[Runner, ...] | None = None,
    progress: Callable[[str], None] = lambda line: None,
    **sizes,
) -> Report:
    """A whole bench run on a server of its own; the report (its tables, its JSON).

    Every scenario and its sizes (inputs.Sizes' fields) can be narrowed (a lesson runs a small
    part live): the defaults are the full run's, or --quick's. `claimers` None means every
    claimer; `runners` None means the designs, the floor and every installed peer.
    """
    # imported here, not above: every worker process starts through pgqueue.cli, which needs
    # only bench's inputs (its --help), and the scenarios' imports were 40% of that start
    from pgqueue.bench import claims, databases, pgbench, throughput, wake_up
    from pgqueue.bench.report import Report, machine

    claimers = claims.CLAIMERS if claimers is None else claimers
    size = inputs.sizes(quick, **sizes)
    scenarios = inputs.check_scenarios(scenarios)
    started = time.monotonic()
    with databases.own_server() as where:
        report = Report(
            machine=machine(),
            server={"version": server.version(), "where": where},
            quick=quick,
            depths=list(size.depths),
            samples=size.samples,
            workers=list(size.workers),
            jobs=size.jobs,
            window=size.window,
        )
        progress(f"pgqueue bench on {where} (PostgreSQL {report.server['version']})")
        if "claims" in scenarios:
            progress("claim cost per depth")
            report.claim_costs = claims.measure(report.depths, size.samples, progress, claimers)
        if "throughput" in scenarios:
            if runners is None:
                found, report.peers_missing = throughput.peer_runners()
                runners = throughput.RUNNERS + found
            for line in report.peers_missing:
                progress(f"  not run: {line}")
            progress(f"throughput: {size.jobs:,} no-op jobs, at most {size.window:g} s per point")
            for runner in runners:
                for n in size.workers:
                    point = throughput.measure(runner, n, size.jobs, size.window)
                    report.throughput.append(point)
                    progress(f"  {runner.name:<34} {n} worker(s): {point.jobs_per_s:>10,.0f} jobs/s")
        if "wake-up" in scenarios:
            progress("wake-up: one idle worker, jobs committed one at a time")
            for design, count in size.wake_samples.items():
                wake = wake_up.measure(design, count)
                report.wake_ups.append(wake)
                progress(f"  {design:<34} p50 {wake.p50_ms:8.1f} ms, p99 {wake.p99_ms:8.1f} ms")
        if "pgbench" in scenarios:
            report.pgbench = pgbench.measure(size.pgbench_clients, size.pgbench_seconds)
            progress("  " + report.pgbench_table())
    report.seconds = round(time.monotonic() - started, 1)
    return report
