"""What a bench run measures: the sizes of a full run and of --quick, and checks of the values asked for."""

from __future__ import annotations

import dataclasses
import os

from pgqueue import values

MAX_DEPTH = 10_000_000
MAX_WORKERS = 32
SCENARIOS = ("claims", "throughput", "wake-up", "pgbench")
BATCH = 50  # the hardened batch claim's size
FLOOR = "floor (bare SKIP LOCKED)"
# the no-op jobs of each point lesson 14 measures live; the tests set it small (its points drain)
LESSON_JOBS = int(os.environ.get("PGQUEUE_BENCH_LESSON_JOBS", "2000"))


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How much a run measures: each scenario's sizes."""

    depths: tuple[int, ...]  # waiting jobs the claims are timed at
    samples: int  # timed claims per depth
    workers: tuple[int, ...]  # worker processes per throughput point
    jobs: int  # no-op jobs per throughput point
    window: float  # seconds a point may last: a slow design is measured, not drained
    wake_samples: dict[str, int]  # jobs committed to one idle worker, per design
    pgbench_clients: tuple[int, ...]
    pgbench_seconds: int


FULL = Sizes(
    (1_000, 10_000, 100_000, 1_000_000), 60, (1, 2, 4, 8), 20_000, 10.0,
    {"hardened": 200, "notify-listen": 30}, (1, 2, 4, 8), 5,
)  # fmt: skip
QUICK = Sizes((1_000, 10_000), 10, (1, 2), 2_000, 2.0, {"hardened": 30, "notify-listen": 5}, (1,), 2)


def sizes(quick: bool, **asked) -> Sizes:
    """The full run's sizes, or --quick's, with those asked for (not None) instead; each checked."""
    chosen = dataclasses.replace(QUICK if quick else FULL, **{k: v for k, v in asked.items() if v})
    check_depths(list(chosen.depths))
    check_samples(chosen.samples)
    if any(not 1 <= n <= MAX_WORKERS for n in chosen.workers):
        raise values.BadValue(
            f"worker processes are 1 to {MAX_WORKERS} per point, got {list(chosen.workers)}"
        )
    if unknown := sorted(set(chosen.wake_samples) - set(FULL.wake_samples)):
        raise values.BadValue(
            f"wake-up is measured for {', '.join(FULL.wake_samples)}; got {', '.join(unknown)}"
        )
    return chosen


def check_depths(depths: list[int]) -> list[int]:
    """The depths, increasing and each 1..10,000,000, or a one-line error naming the bad value."""
    if not depths:
        raise values.BadValue("bench needs at least one depth")
    for depth in depths:
        if not 1 <= depth <= MAX_DEPTH:
            raise values.BadValue(f"a depth is 1 to {MAX_DEPTH:,} waiting jobs, got {depth}")
    if sorted(set(depths)) != list(depths):
        raise values.BadValue(f"depths must increase, each once (the queue only grows), got {depths}")
    return list(depths)


def check_scenarios(scenarios: tuple[str, ...]) -> tuple[str, ...]:
    """The scenarios, each one bench knows and named once, or a one-line error naming the bad one."""
    for name in scenarios:
        if name not in SCENARIOS:
            raise values.BadValue(f"a bench scenario is one of {', '.join(SCENARIOS)}; got {name!r}")
    if not scenarios or len(set(scenarios)) != len(scenarios):
        raise values.BadValue(f"name each scenario once, at least one; got {', '.join(scenarios) or 'none'}")
    return scenarios


def check_samples(samples: int) -> int:
    """The number of timed claims per depth (1..1000), or a one-line error."""
    if not 1 <= samples <= 1000:
        raise values.BadValue(f"samples is 1 to 1000 timed claims per depth, got {samples}")
    return samples
