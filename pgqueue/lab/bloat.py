"""Bloat in a hot queue table: dead row versions under churn, what holds VACUUM back, what keeps it small."""

from __future__ import annotations

import contextlib
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from pgqueue import queries
from pgqueue.errors import PgQueueError
from pgqueue.wait import Timeout, until

if TYPE_CHECKING:
    import pandas as pd

DESIGNS = ("hardened", "single-call")  # the designs whose job_queue a burst can churn
QUIET_WITHIN = 10.0  # seconds an experiment waits for other sessions' snapshots to end


def _q():
    return queries.load("clients/bloat.sql")


def _check_design(poc: str) -> str:
    if poc not in DESIGNS:
        raise PgQueueError(f"bloat experiments run on {' or '.join(DESIGNS)}, got {poc!r}")
    return poc


@dataclass(frozen=True)
class Stats:
    """What pg_stat_user_tables says of one table, and its size on disk."""

    live: int
    dead: int
    updates: int
    hot_updates: int
    bytes: int
    pages: int
    vacuums: int


def stats(conn: psycopg.Connection, table: str = "job_queue") -> Stats:
    """The statistics of `table` as of now (this session's own counts flushed first)."""
    q = _q()
    conn.execute(q["flush_stats"])  # on PostgreSQL 15+ they would lag up to a second
    row = conn.execute(q["table_stats"], {"table": table}).fetchone()
    if row is None:
        raise PgQueueError(f"no table {table!r} in the statistics of {conn.info.dbname}")
    return Stats(*row)


def churn(conn: psycopg.Connection, poc: str, jobs: int, *, finish: bool = True) -> int:
    """Start `jobs` pipe jobs of pipeline 2, claim their first jobs and (unless told not to) finish
    them with their pipe jobs, as workers would, in a few set-wide statements; the jobs claimed.

    The hardened lab claims with its own claim_jobs (a lease and an attempt per job); an original
    gets the UPDATE its find_job makes.
    """
    _check_design(poc)
    if not isinstance(jobs, int) or not 1 <= jobs <= 100_000:
        raise PgQueueError(f"churn: jobs must be a whole number from 1 to 100000, got {jobs!r}")
    q, uuid = _q(), secrets.token_hex(6)
    with conn.transaction():
        conn.execute(q["add_pipe_jobs"], {"jobs": jobs})
    with conn.transaction():
        if poc == "hardened":
            claimed = conn.execute(q["lease_burst"], {"uuid": uuid, "jobs": jobs}).fetchone()[0]
        else:
            claimed = conn.execute(q["claim_burst"], {"uuid": uuid}).rowcount
    if finish:
        with conn.transaction():
            conn.execute(q["finish_burst"], {"uuid": uuid})
            if poc == "hardened":
                conn.execute(q["end_attempts"], {"uuid": uuid})
    return claimed


@dataclass(frozen=True)
class ClaimRead:
    """What one claim's SELECT read: pages (buffers hit or read) and how it found its rows."""

    pages: int
    scan: str  # e.g. "Index Scan using job_queue_waiting" or "Seq Scan"
    found: int  # rows it returned (0 or 1)


def _leaf(plan: dict) -> dict:
    while plan.get("Plans"):
        plan = plan["Plans"][0]
    return plan


def claim_read(conn: psycopg.Connection, poc: str) -> ClaimRead:
    """Run the claim's SELECT of `poc` for first_process under EXPLAIN (ANALYZE, BUFFERS).

    Pages, not milliseconds: the count does not depend on the machine. The row it locks is
    let go at once (the claim is rolled back).
    """
    name = "hardened_claim_plan" if _check_design(poc) == "hardened" else "original_claim_plan"
    with conn.transaction(force_rollback=True):
        top = conn.execute(_q()[name]).fetchone()[0][0]["Plan"]
    leaf = _leaf(top)
    scan = leaf["Node Type"] + (f" using {leaf['Index Name']}" if "Index Name" in leaf else "")
    return ClaimRead(top["Shared Hit Blocks"] + top["Shared Read Blocks"], scan, top["Actual Rows"])


@dataclass
class Holder:
    """A session whose transaction stays open (holding a snapshot, in REPEATABLE READ); `end()` closes it."""

    pid: int
    backend_xmin: int | None  # the oldest transaction id its snapshot still sees
    _conn: psycopg.Connection | None = field(default=None, repr=False)

    def close(self) -> None:
        """`end()`, for contextlib.closing."""
        self.end()

    def end(self) -> None:
        """End the long transaction, and its session (a second call does nothing)."""
        if self._conn is not None:
            self._conn.rollback()
            self._conn.close()
            self._conn = None


def open_snapshot(
    connect: Callable[[], psycopg.Connection],
    isolation: psycopg.IsolationLevel = psycopg.IsolationLevel.REPEATABLE_READ,
    *,
    takes_xid: bool = False,
) -> Holder:
    """A new session (from `connect`) that opens a transaction, reads one row, and keeps the
    transaction open until `end()`: the long transaction of the lesson.

    REPEATABLE READ keeps the read's snapshot to the end; READ COMMITTED drops it when the read
    ends. `takes_xid` also gives the transaction an id, as its first write would.
    """
    conn = connect()
    try:
        conn.autocommit = False
        conn.isolation_level = isolation
        conn.execute(_q()["take_snapshot"])  # the snapshot is taken by the first query
        if takes_xid:
            conn.execute(_q()["take_xid"])
        pid = conn.info.backend_pid
        with connect() as observer:
            backend_xmin = holder_activity(observer, pid)["backend_xmin"]
    except BaseException:
        conn.close()
        raise
    return Holder(pid, backend_xmin, conn)


def who_holds_vacuum_back(
    conn: psycopg.Connection, poc: str, connect: Callable[[], psycopg.Connection], jobs: int = 300
) -> pd.DataFrame:
    """Three kinds of idle open transaction in turn: how many dead versions VACUUM removes beside each."""
    import pandas as pd  # only the lesson reads a table: workers import this module too

    kinds = {
        "READ COMMITTED, read a row": (psycopg.IsolationLevel.READ_COMMITTED, False),
        "READ COMMITTED, read a row, has a transaction id": (psycopg.IsolationLevel.READ_COMMITTED, True),
        "REPEATABLE READ, read a row": (psycopg.IsolationLevel.REPEATABLE_READ, False),
    }
    rows = {}
    vacuum(conn)  # start from a clean table: only this round's dead versions count
    for name, (isolation, takes_xid) in kinds.items():
        # a session of another's (a test's or a worker's, say) would hold VACUUM back too: it ends first
        with contextlib.suppress(Timeout):
            until(lambda: not conn.execute(_q()["others_holding_back"]).fetchone()[0], QUIET_WITHIN)
        with contextlib.closing(open_snapshot(connect, isolation, takes_xid=takes_xid)) as holder:
            churn(conn, poc, jobs)
            seen = vacuum(conn)
            rows[name] = {
                "its backend_xmin": holder_activity(conn, holder.pid)["backend_xmin"] or "none",
                "dead versions removed": seen.removed,
                "kept (not yet removable)": seen.not_yet_removable,
            }
        vacuum(conn)  # what it held back goes now, before the next kind
    return pd.DataFrame(rows).T


def holding(connect: Callable[[], psycopg.Connection]) -> contextlib.closing[Holder]:
    """`open_snapshot` for the length of a `with` block."""
    return contextlib.closing(open_snapshot(connect))


def holder_activity(conn: psycopg.Connection, pid: int) -> dict:
    """pg_stat_activity's row of session `pid`: state, backend_xmin, seconds its transaction is open."""
    return conn.cursor(row_factory=dict_row).execute(_q()["holder"], {"pid": pid}).fetchone() or {}


@dataclass(frozen=True)
class Vacuumed:
    """What VACUUM (VERBOSE) job_queue reported: row versions removed, and dead ones it had to keep."""

    removed: int
    not_yet_removable: int
    report: str = field(repr=False)  # its INFO messages, as PostgreSQL wrote them


def vacuum(conn: psycopg.Connection) -> Vacuumed:
    """VACUUM (VERBOSE) job_queue on `conn` (autocommit), with its report read."""
    if not conn.autocommit:
        raise PgQueueError("vacuum: VACUUM cannot run inside a transaction; use an autocommit connection")
    said: list[str] = []

    def hear(diag: psycopg.errors.Diagnostic) -> None:
        said.append(diag.message_primary or "")

    # counts still pending in this session would land after VACUUM's own and undo them
    conn.execute(_q()["flush_stats"])
    conn.add_notice_handler(hear)
    try:
        conn.execute(_q()["vacuum_verbose"])
    finally:
        conn.remove_notice_handler(hear)
    report = "\n".join(said)
    tuples = re.search(r"tuples: (\d+) removed, \d+ remain, (\d+) are dead but not yet removable", report)
    if tuples is None:
        raise PgQueueError(f"vacuum: no 'tuples:' line in VACUUM's report: {report[:300]!r}")
    return Vacuumed(int(tuples[1]), int(tuples[2]), report)


def autovacuum_off(conn: psycopg.Connection) -> None:
    """Turn autovacuum off for job_queue, so that only the lesson's VACUUMs change what it measures."""
    conn.execute(_q()["autovacuum_off"])


def autovacuum_for_a_queue(conn: psycopg.Connection) -> list[str]:
    """Autovacuum back on for job_queue, started by 1,000 dead rows plus 1 %; its reloptions."""
    conn.execute(_q()["autovacuum_for_a_queue"])
    return reloptions(conn)


def reloptions(conn: psycopg.Connection, table: str = "job_queue") -> list[str]:
    """The storage parameters set on `table` (pg_class.reloptions), [] when none."""
    row = conn.execute(_q()["reloptions"], {"table": table}).fetchone()
    if row is None:
        raise PgQueueError(f"no table {table!r} in {conn.info.dbname}")
    return row[1] or []


def hot_updates(conn: psycopg.Connection, rows: int = 4000) -> list[dict]:
    """Updates and HOT updates of two scratch tables, fillfactor 100 and 70, `rows` rows each:
    first a column no index holds, on one row in four, then an indexed one, on another quarter.
    """
    q, found = _q(), []
    conn.execute(q["hot_probes"])
    for table, fillfactor in (("hot_full", 100), ("hot_roomy", 70)):
        name = sql.Identifier(table)
        conn.execute(sql.SQL(q["fill_probe"]).format(table=name), {"rows": rows})
        before = stats(conn, table)
        for what, query in (("touched (no index)", "touch_quarter"), ("state (indexed)", "move_quarter")):
            changed = conn.execute(sql.SQL(q[query]).format(table=name)).rowcount
            after = stats(conn, table)
            found.append(
                {
                    "table": table,
                    "fillfactor": fillfactor,
                    "column updated": what,
                    "rows updated": changed,
                    "HOT updates": after.hot_updates - before.hot_updates,
                    "pages": after.pages,
                }
            )
            before = after
    return found


def drop_a_day(conn: psycopg.Connection, rows: int = 4000) -> list[dict]:
    """Remove the older half of `rows` finished rows two ways: DELETE from one table, and DROP the
    day's partition of a table partitioned by day; what each leaves behind."""
    if not isinstance(rows, int) or not 2 <= rows <= 1_000_000:
        raise PgQueueError(f"drop_a_day: rows must be a whole number from 2 to 1000000, got {rows!r}")
    q, found = _q(), []
    conn.execute(q["partition_probes"])
    for table, removal, left in (
        ("done_in_one", "delete_day_1", "done_in_one"),
        ("done_by_day", "drop_day_1", "done_day_2"),
    ):
        name = sql.Identifier(table)
        conn.execute(sql.SQL(q["fill_days"]).format(table=name), {"rows": rows})
        before = conn.execute(q["kept_bytes"], {"table": table}).fetchone()[0]
        conn.execute(q[removal])
        found.append(
            {
                "kept as": "one table" if table == "done_in_one" else "a partition per day",
                "removed by": "DELETE" if removal == "delete_day_1" else "DROP of the day's partition",
                "rows left": conn.execute(sql.SQL(q["rows_in"]).format(table=name)).fetchone()[0],
                "dead versions left": stats(conn, left).dead,
                "bytes before": before,
                "bytes after": conn.execute(q["kept_bytes"], {"table": table}).fetchone()[0],
            }
        )
    return found
