"""What one hardened claim costs while many jobs in other states sit beside the waiting ones."""

from __future__ import annotations

import functools
import secrets
import statistics
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psycopg

from pgqueue import queries
from pgqueue.errors import PgQueueError
from pgqueue.queues import designs, labs
from pgqueue.queues.heartbeats import Identity

if TYPE_CHECKING:
    import pandas as pd

POC = "hardened"
STATES = ("nothing else", "backing off, ahead in serving order", "running, leased by a live worker")


@dataclass(frozen=True)
class StateCost:
    """find_job for one job, timed on a warm connection, beside `beside` jobs in `state`."""

    state: str
    beside: int
    ms: tuple[float, ...]  # each timed call
    pick_rows: int  # rows the pick read: the one it took, and those its filter passed over
    pick_pages: int
    rescue_rows: int  # leases the rescue looked through
    rescue_pages: int

    def row(self) -> dict[str, object]:
        """The measurement as one table row: the median, the spread, what the pick and rescue read."""
        return {
            "jobs beside": self.beside,
            "ms p50": round(statistics.median(self.ms), 2),
            "ms min-max": f"{min(self.ms):.2f}-{max(self.ms):.2f}",
            "pick: rows read": self.pick_rows,
            "pick: pages": self.pick_pages,
            "rescue: leases read": self.rescue_rows,
            "rescue: pages": self.rescue_pages,
        }


_q = functools.partial(queries.load, "clients/claim_cost.sql")


def _read(plan: dict) -> tuple[int, int]:
    """Rows the plan's scans returned plus those their filters removed, and its pages."""
    rows, stack = 0, [plan]
    while stack:
        node = stack.pop()
        if "Scan" in node["Node Type"]:
            rows += int(node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0))
        stack += node.get("Plans", [])
    return rows, plan["Shared Hit Blocks"] + plan["Shared Read Blocks"]


def _explain(conn: psycopg.Connection, query: str) -> tuple[int, int]:
    return _read(conn.execute(query).fetchone()[0][0]["Plan"])


def measure(state: str, beside: int = 20_000, calls: int = 9) -> StateCost:
    """One scratch hardened lab: `beside` jobs in `state`, then `calls` timed claims of a due job."""
    if state not in STATES:
        raise PgQueueError(f"claim_cost: state is one of {', '.join(map(repr, STATES))}, got {state!r}")
    with labs.scratch(POC, examples=True) as lab, lab.connect() as conn:
        pipe_job = conn.execute(_q()["pipe_job"], {"request_id": 900_000}).fetchone()[0]
        if state == STATES[1]:
            conn.execute(_q()["add_backing_off"], {"pipe_job_id": pipe_job, "n": beside})
        elif state == STATES[2]:
            conn.execute(
                _q()["add_running"], {"pipe_job_id": pipe_job, "n": beside, "holder": secrets.token_hex(6)}
            )
        conn.execute(_q()["add_waiting"], {"pipe_job_id": pipe_job, "n": calls + 3})
        conn.execute(_q()["analyze"])
        queue, who = designs.get(POC).client(conn), Identity.new("first_process", "1.9.2")
        for _ in range(3):  # warm the connection and the plans
            queue.ask(who)
        timed = []
        for _ in range(calls):
            started = time.perf_counter()
            queue.ask(who)
            timed.append((time.perf_counter() - started) * 1000)
        # the claim's own pick, as lesson 11 reads it, and the rescue's look at the leases
        pick = _explain(conn, queries.load("clients/bloat.sql")["hardened_claim_plan"])
        rescue = _explain(conn, _q()["explain_rescue_scan"])
    return StateCost(state, beside if state != STATES[0] else 0, tuple(timed), *pick, *rescue)


def by_state(beside: int = 20_000, calls: int = 9) -> pd.DataFrame:
    """A claim's cost beside `beside` jobs in each state, one scratch lab each, as a table."""
    import pandas as pd  # only the lesson reads a table: workers import the kit too

    return pd.DataFrame({s: measure(s, beside, calls).row() for s in STATES}).T
