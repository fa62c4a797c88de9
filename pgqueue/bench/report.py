"""What a bench run measured: each scenario's records, the run's tables and JSON, the hardened goals."""

from __future__ import annotations

import contextlib
import json
import os
import platform
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pgqueue.bench.inputs import BATCH, FLOOR


@dataclass(frozen=True)
class ClaimCost:
    """What one claimer's calls cost at one queue depth (milliseconds per call)."""

    claimer: str
    design: str
    depth: int
    calls: int
    jobs_per_call: int
    p50_ms: float
    p90_ms: float
    mean_ms: float
    plan: str = ""  # EXPLAIN (ANALYZE, BUFFERS) of every statement one more claim ran, by auto_explain


@dataclass(frozen=True)
class Throughput:
    """Jobs finished per second by `workers` processes of one runner, on a fresh queue of `queued` jobs."""

    runner: str
    design: str
    batch: int
    workers: int
    queued: int
    jobs: int
    seconds: float
    jobs_per_s: float
    drained: bool  # the queue ran empty before the window closed


@dataclass(frozen=True)
class WakeUp:
    """How long a job waited, from its commit to an idle worker holding it (milliseconds)."""

    design: str
    samples: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    all_ms: list[float]


@dataclass(frozen=True)
class Pgbench:
    """pgbench's transactions per second: one single-row `UPDATE ... RETURNING` each, as a claim is."""

    clients: int
    seconds: int
    tps: float


@dataclass(frozen=True)
class Goal:
    """One goal of the hardened design, the number this run measured for it, and whether it was met."""

    goal: str
    measured: str
    met: bool | None  # None: this run did not measure it (a peer missing, say)

    def line(self) -> str:
        """The goal in one line of the table."""
        verdict = {True: "met", False: "MISSED", None: "not measured"}[self.met]
        return f"  {verdict:<13}{self.goal}: {self.measured}"


@dataclass
class Report:
    """One bench run: where it ran, what it measured, and how long that took."""

    machine: dict
    server: dict
    quick: bool
    depths: list[int]
    samples: int
    workers: list[int] = field(default_factory=list)
    jobs: int = 0  # no-op jobs queued for each throughput point
    window: float = 0.0  # the most seconds a throughput point may last
    claim_costs: list[ClaimCost] = field(default_factory=list)
    throughput: list[Throughput] = field(default_factory=list)
    wake_ups: list[WakeUp] = field(default_factory=list)
    pgbench: list[Pgbench] = field(default_factory=list)
    peers_missing: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> str:
        """The whole run as JSON, with the goals checked (the lesson reads a saved one)."""
        return json.dumps({**asdict(self), "goals": [asdict(goal) for goal in self.goals()]}, indent=1)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Report:
        """A run saved with --json (its goals are checked again from its numbers)."""
        data = json.loads(Path(path).read_text())
        data.pop("goals", None)
        parts = {"claim_costs": ClaimCost, "throughput": Throughput, "wake_ups": WakeUp, "pgbench": Pgbench}
        for key, kind in parts.items():
            data[key] = [kind(**item) for item in data.get(key, [])]
        return cls(**data)

    def table(self) -> str:
        """Every table of the run, one after another."""
        parts = [self.claim_table(), self.throughput_table(), self.wake_up_table(), self.pgbench_table()]
        goals = self.goals()
        if goals:
            parts.append("\n".join(["goals for the hardened design"] + [g.line() for g in goals]))
        if self.peers_missing:
            parts.append("\n".join(["peers not run"] + [f"  {line}" for line in self.peers_missing]))
        return "\n\n".join(part for part in parts if part)

    def claim_table(self) -> str:
        """Claim cost per depth for every claimer, and how much a claim at the deepest costs more."""
        if not self.claim_costs:
            return ""
        depths = self.depths
        head = f"{'claim (ms per call, p50)':<30}" + "".join(f"{depth(d):>10}" for d in depths)
        lines = [head + f"{'deepest/first':>15}"]
        by = {(c.claimer, c.depth): c for c in self.claim_costs}
        for claimer in dict.fromkeys(c.claimer for c in self.claim_costs):
            costs = [by.get((claimer, d)) for d in depths]
            cells = "".join(f"{c.p50_ms:>10.2f}" if c else f"{'-':>10}" for c in costs)
            first, last = costs[0], costs[-1]
            growth = f"{last.p50_ms / first.p50_ms:>14.1f}x" if first and last and first.p50_ms else ""
            lines.append(f"{claimer:<30}{cells}{growth}")
        return "\n".join(lines)

    def jobs_per_s(self, runner: str, workers: int) -> float | None:
        """One throughput point's jobs/s, if it was measured."""
        return next(
            (t.jobs_per_s for t in self.throughput if t.runner == runner and t.workers == workers), None
        )

    def throughput_table(self) -> str:
        """Jobs/s per worker processes for every design and peer, and its ratio to the floor's."""
        if not self.throughput:
            return ""
        head = f"{'jobs/s (x the floor)':<34}" + "".join(f"{f'{n} worker' + ('s' if n > 1 else ''):>18}"
                                                          for n in self.workers)  # fmt: skip
        lines = [head]
        for runner in dict.fromkeys(t.runner for t in self.throughput):
            cells = ""
            for n in self.workers:
                rate, floor = self.jobs_per_s(runner, n), self.jobs_per_s(FLOOR, n)
                ratio = f" ({rate / floor:.2f}x)" if rate is not None and floor else ""
                cells += f"{(f'{rate:,.0f}' if rate is not None else '-') + ratio:>18}"
            lines.append(f"{runner:<34}{cells}")
        return "\n".join(lines)

    def wake_up_table(self) -> str:
        """How long a job waits for an idle worker, per design."""
        if not self.wake_ups:
            return ""
        lines = [f"{'wake-up (ms from commit to held)':<34}{'p50':>10}{'p90':>10}{'p99':>10}{'max':>10}"]
        for w in self.wake_ups:
            lines.append(
                f"{w.design:<34}{w.p50_ms:>10.1f}{w.p90_ms:>10.1f}{w.p99_ms:>10.1f}{w.max_ms:>10.1f}"
            )
        return "\n".join(lines)

    def pgbench_table(self) -> str:
        """pgbench's transactions per second, per client connection count."""
        if not self.pgbench:
            return ""
        cells = ", ".join(
            f"{p.clients} client{'s' if p.clients > 1 else ''}: {p.tps:,.0f}" for p in self.pgbench
        )
        return f"pgbench, single-row UPDATE ... RETURNING (transactions/s): {cells}"

    def goals(self) -> list[Goal]:
        """The hardened design's goals (issue 14, section 2), each with the number measured."""
        return _goals(self)


def depth(n: int) -> str:
    """A depth as the tables show it: 1k, 10k, 1M."""
    return (
        f"{n // 1_000_000}M"
        if n >= 1_000_000 and n % 1_000_000 == 0
        else (f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n))
    )


def percentile(values: list[float], fraction: float) -> float:
    """The value `fraction` of the way up the sorted values (no interpolation)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def machine() -> dict:
    """What the numbers were measured on: CPU, cores, memory, system and Python."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        memory = int(Path("/proc/meminfo").read_text().split()[1]) * 1024
    return {
        "cpu": model or platform.processor(),
        "cores": os.cpu_count(),
        "memory_bytes": memory,
        "system": platform.platform(),
        "python": platform.python_version(),
    }


def _ratios(report: Report, runner: Callable[[Throughput], bool], other: Callable[[Throughput], bool]):
    """(workers, runner's jobs/s / other's) at each worker count where both were measured."""
    out = []
    for n in report.workers:
        mine = next((t.jobs_per_s for t in report.throughput if t.workers == n and runner(t)), None)
        theirs = next((t.jobs_per_s for t in report.throughput if t.workers == n and other(t)), None)
        if mine is not None and theirs:
            out.append((n, mine / theirs))
    return out


def _ratio_goal(goal: str, ratios: list[tuple[int, float]], least: float, missing: str) -> Goal:
    if not ratios:
        return Goal(goal, missing, None)
    text = ", ".join(f"{r:.2f}x with {n}" for n, r in ratios)
    return Goal(goal, f"{text} worker process(es)", all(r >= least for _, r in ratios))


def _not_run(report: Report, package: str) -> str:
    """Why a peer's number is missing: not installed here, or not asked for in this run."""
    if any(line.startswith(package) for line in report.peers_missing):
        return f"{package} is not installed (pip install -r requirements-bench.txt)"
    return f"{package} was not in this run, or not its hardened counterpart"


def _goals(report: Report) -> list[Goal]:
    goals = []
    costs = [c for c in report.claim_costs if c.claimer == "hardened (find_job)"]
    if len(costs) >= 2:
        first, last = costs[0], costs[-1]
        ratio = last.p50_ms / first.p50_ms
        goals.append(Goal(
            "claim cost flat: at 1M waiting jobs at most 1.3x its cost at 1k",
            f"{last.p50_ms:.2f} ms at {depth(last.depth)}, {first.p50_ms:.2f} ms at {depth(first.depth)}: "
            f"{ratio:.2f}x", ratio <= 1.3,
        ))  # fmt: skip

    def runner(name: str) -> Callable[[Throughput], bool]:
        return lambda t: t.runner == name

    def peer(package: str, batch: int | None = None) -> Callable[[Throughput], bool]:
        return lambda t: t.design == package and (batch is None or t.batch == batch)

    if report.throughput:
        goals.append(_ratio_goal(
            "single-job throughput at least 0.9x the bare SKIP LOCKED loop",
            _ratios(report, runner("hardened"), runner(FLOOR)), 0.9, "the floor was not run",
        ))  # fmt: skip
        for batch in (10, BATCH):
            goals.append(_ratio_goal(
                f"batch throughput at least 1.2x pgqueuer (batch of {batch})",
                _ratios(report, runner(f"hardened, batch of {batch}"), peer("pgqueuer", batch)), 1.2,
                _not_run(report, "pgqueuer"),
            ))  # fmt: skip
        goals.append(_ratio_goal(
            f"batch throughput (batch of {BATCH}) at least 7x procrastinate",
            _ratios(report, runner(f"hardened, batch of {BATCH}"), peer("procrastinate")), 7.0,
            _not_run(report, "procrastinate"),
        ))  # fmt: skip
    wake = next((w for w in report.wake_ups if w.design == "hardened"), None)
    if wake:
        goals.append(Goal("NOTIFY wake-up p50 at most 5 ms", f"{wake.p50_ms:.1f} ms", wake.p50_ms <= 5.0))
    return goals
