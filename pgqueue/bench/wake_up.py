"""Wake-up latency: one idle worker, and jobs committed one at a time: how long each waited to be held."""

from __future__ import annotations

import random
import statistics
import time

from pgqueue.bench import databases, worker
from pgqueue.bench.report import WakeUp, percentile
from pgqueue.queues import notify_listen

WAKE_TIMEOUT = 30.0  # seconds a job may wait for the idle worker (its poll, 5 s, catches a lost wake-up)
# seconds from one job held to the next committed, at random: for notify-listen over one whole
# cycle of its idle worker (a beat, then the idle pause), so a job arrives at any moment of it
WAKE_GAP = {"hardened": (0.01, 0.05), "notify-listen": (0.0, notify_listen.Options().idle)}


def measure(design: str, samples: int) -> WakeUp:
    """Commit `samples` jobs one at a time, each after a random gap, to one idle worker; time each."""
    queue = databases.queue(design, requests=True)
    low, high = WAKE_GAP[design]
    waits = []
    with (
        queue.connect() as conn,
        worker.started([worker.argv(f"wake:{design}", queue.database, 1)]) as (proc,),
    ):
        proc.stdin.write(f"go {samples * 10 + 30} {samples}\n".encode())
        proc.stdin.flush()
        for _ in range(samples):
            time.sleep(random.uniform(low, high))  # arrivals at random moments of the worker's cycle
            queue.add(conn, 1)
            committed = time.monotonic()  # autocommit: the statement has committed
            held = worker.read(proc, "that it held the job", WAKE_TIMEOUT)["held"]
            waits.append(round((held - committed) * 1000, 3))
    return WakeUp(
        design, samples, round(statistics.median(waits), 3), round(percentile(waits, 0.9), 3),
        round(percentile(waits, 0.99), 3), max(waits), waits,
    )  # fmt: skip
