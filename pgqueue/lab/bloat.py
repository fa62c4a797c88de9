"""Bloat in a hot queue table: dead row versions under churn, what holds VACUUM back, what keeps it small."""

from __future__ import annotations

import contextlib
import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

from pgqueue import queries
from pgqueue.check import core
from pgqueue.check.core import Verdict, sendable, written
from pgqueue.errors import PgQueueError
from pgqueue.queues import labs

if TYPE_CHECKING:
    import pandas as pd

DESIGNS = ("hardened", "single-call")  # the designs whose job_queue a burst can churn


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
            row = observer.execute(_q()["holder"], {"pid": pid}).fetchone()
    except BaseException:
        conn.close()
        raise
    return Holder(pid, row[2], conn)


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


@contextlib.contextmanager
def holding(connect: Callable[[], psycopg.Connection]) -> Iterator[Holder]:
    """`open_snapshot` for the length of a `with` block."""
    holder = open_snapshot(connect)
    try:
        yield holder
    finally:
        holder.end()


def holder_activity(conn: psycopg.Connection, pid: int) -> dict:
    """pg_stat_activity's row of session `pid`: state, backend_xmin, seconds its transaction is open."""
    cur = conn.execute(_q()["holder"], {"pid": pid})
    row = cur.fetchone()
    return dict(zip([c.name for c in cur.description], row, strict=True)) if row else {}


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


def _archive_scene(conn: psycopg.Connection, low: int, high: int) -> dict[int, str]:
    """Lay out the archive's scene: every job said as the learner reads it, by id.

    Pipe jobs finished long ago (3 x `high` seconds, 90 x `low` at least), in between the two
    thresholds (under 30 x `low`), a little ago (30 to 100 seconds, `low` / 2 at most) and just now,
    each tier of a drawn size; some of the oldest had a rescued attempt first; jobs that finished
    long ago while their pipe job runs on; running jobs and waiting ones. So what a statement moves
    tells a unit apart: `%(seconds)s` read as minutes moves the oldest tier alone at `low`, and
    nothing at `high`; read as a sixtieth it moves the little tier at `low`, not at `high`.
    """
    q, rng = _q(), secrets.SystemRandom()
    pipe_jobs: set[int] = set()
    tiers = [
        max(3 * high, 90 * low),
        rng.randint(2 * low, min(high // 2, 30 * low)),
        rng.randint(30, min(low // 2, 100)),
        0,
    ]
    for age in tiers:
        churn(conn, "hardened", rng.randint(3, 10))
        now = {r[0] for r in conn.execute(q["finished_pipe_jobs"])}
        made, pipe_jobs = sorted(now - pipe_jobs), now
        if age:
            conn.execute(q["age_finished"], {"ids": made, "seconds": age})
        if age == tiers[0]:
            conn.execute(q["rescued_before"], {"ids": made[: max(1, len(made) // 2)]})
    churn(conn, "hardened", rng.randint(4, 10), finish=False)
    running = [r[0] for r in conn.execute(q["running_pipe_jobs"])]
    conn.execute(q["finish_first_steps"], {"ids": running[: len(running) // 2], "seconds": tiers[0]})
    conn.execute(q["add_pipe_jobs"], {"jobs": rng.randint(3, 10)})  # waiting

    def said(finished: bool, held: bool, pipe_job_finished: bool, pipe_age: int, age: int) -> str:
        if pipe_job_finished:
            return f"of pipe jobs finished {pipe_age} s ago" if pipe_age else "of pipe jobs finished just now"
        if finished:
            return f"finished {age} s ago, of pipe jobs still running"
        return "running" if held else "waiting"

    return {row[0]: said(*row[1:]) for row in conn.execute(q["archive_scene"])}


@dataclass(frozen=True)
class _Tables:
    """The hot tables and their archives at one moment: each row as text, by its key."""

    jobs: dict[int, str]
    archived: list[tuple[int, str]]  # a list: a job archived twice shows twice
    attempts: dict[int, str]
    archived_attempts: list[tuple[int, str]]

    @classmethod
    def read(cls, conn: psycopg.Connection) -> _Tables:
        """The four tables as they are now."""
        rows = _q()["archive_rows"]

        def rows_of(table: str, key: str) -> list[tuple[int, str]]:
            query = sql.SQL(rows).format(table=sql.Identifier(table), key=sql.Identifier(key))
            return [tuple(r) for r in conn.execute(query)]

        return cls(
            dict(rows_of("job_queue", "job_id")),
            rows_of("job_archive", "job_id"),
            dict(rows_of("job_attempts", "attempt_id")),
            rows_of("job_attempt_archive", "attempt_id"),
        )


# %(seconds)s read as minutes, as a sixtieth, as milliseconds: each moves a set of jobs of its own
_UNITS = (60, 1 / 60, 1 / 1000)
_EDGE = 2  # seconds a pipe job ages between the scene read and the statement's clock (either side)


@dataclass(frozen=True)
class _Run:
    """One threshold's run: what had to move, what other units would move, the tables around it."""

    expected: set[int]
    read_as: dict[float, tuple[set[int], set[int]]]  # unit: (surely old enough, perhaps old enough)
    before: _Tables
    after: _Tables

    @property
    def moved(self) -> set[int]:
        """The jobs the statement took out of job_queue, archived or not."""
        return set(self.before.jobs) - set(self.after.jobs)


def check_archive(query: object) -> Verdict:
    """Try an archiving statement on a scratch hardened lab, at two thresholds `%(seconds)s`.

    The lab holds pipe jobs finished long ago, between the thresholds, a little ago and just now
    (some of the oldest jobs with two attempts), jobs finished long ago whose pipe job still runs,
    running jobs and waiting ones; tier sizes and thresholds are drawn anew. At each threshold, in
    a transaction rolled back afterwards, the statement must move exactly the jobs of the pipe jobs
    finished at least `%(seconds)s` ago into job_archive, and their attempts into
    job_attempt_archive: every row once and unchanged, none lost, nothing else moved or touched.
    """
    verdict = Verdict("your archive")
    text = written(query, verdict)
    if text is None:
        return verdict
    q, rng = _q(), secrets.SystemRandom()
    low, high = rng.randint(60, 900), 3600 * rng.randint(2, 6)
    runs: dict[int, _Run] = {}
    with labs.scratch("hardened", None, examples=True) as lab, lab.connect() as conn:
        if not sendable(conn, text, ("seconds",), verdict):
            return verdict
        conn.execute(q["create_archives"])
        said = _archive_scene(conn, low, high)
        job_of = dict(conn.execute(q["job_of_attempts"]).fetchall())

        def old_enough(seconds: float) -> set[int]:
            return set(conn.execute(q["old_enough"], {"seconds": max(seconds, 0)}).fetchone()[0])

        for seconds in (low, high):
            expected = old_enough(seconds)
            read_as = {f: (old_enough(f * seconds + _EDGE), old_enough(f * seconds - _EDGE)) for f in _UNITS}
            with conn.transaction(force_rollback=True):
                before = _Tables.read(conn)
                try:
                    with conn.transaction():
                        conn.execute(text, {"seconds": seconds})
                except psycopg.Error as exc:
                    return verdict.refuse(_archive_refused(exc, text))
                runs[seconds] = _Run(expected, read_as, before, _Tables.read(conn))
    return _judge_archive(verdict, said, job_of, runs)


def _archive_refused(exc: psycopg.Error, text: str) -> str:
    """PostgreSQL's refusal of an archiving statement, where in it, and what usually causes it."""
    said = exc.diag.message_primary or str(exc)
    where = core.where(text, exc, with_parameters=True)
    if isinstance(exc, psycopg.errors.ForeignKeyViolation):
        where += "; job_attempts points at job_queue: move a job's attempts in the same statement"
    elif "multiple commands" in said:
        where += "; write one statement (data-modifying WITH queries), so nothing happens in between"
    return f"PostgreSQL refused it: {said}{where}"


def _some(ids: set[int] | list[int]) -> str:
    shown = sorted(set(ids))
    return ", ".join(map(str, shown[:5])) + (", ..." if len(shown) > 5 else "")


def _unit_read(runs: dict[int, _Run]) -> float | None:
    """The unit the statement reads %(seconds)s in, when at each threshold it moved exactly the jobs
    old enough in that unit (and not what seconds ask, and not the same jobs at both)."""
    if all(run.moved == run.expected for run in runs.values()):
        return None
    if len({frozenset(run.moved) for run in runs.values()}) < 2:
        return None  # the same jobs at both: it does not read %(seconds)s at all
    return next((unit for unit in _UNITS if _fits(runs, unit)), None)


def _fits(runs: dict[int, _Run], unit: float) -> bool:
    """Whether at each threshold the statement moved the jobs old enough with %(seconds)s in `unit`."""
    return all(run.read_as[unit][0] <= run.moved <= run.read_as[unit][1] for run in runs.values())


def _unit_said(unit: float, runs: dict[int, _Run]) -> str:
    """The ✗ line of a statement that reads %(seconds)s in `unit`, from what it moved at each threshold."""
    if unit == 60:
        how, ago = "as minutes, not seconds", "%(seconds)s minutes"
    else:
        how = "in a unit smaller than seconds (a sixtieth of a second? a millisecond?)"
        ago = f"%(seconds)s / {round(1 / unit)} seconds"
    moved = " and ".join(
        f"{len(run.moved) or 'none'} at {seconds} s" + ("" if unit == 60 else f" ({seconds * unit:.3g} s)")
        for seconds, run in runs.items()
    )
    return (
        f"it reads %(seconds)s {how}: it moved exactly the jobs of pipe jobs finished at least {ago} ago, "
        f"{moved}: make_interval(secs => %(seconds)s), or %(seconds)s * interval '1 second'"
    )


def _judge_archive(
    verdict: Verdict, said: dict[int, str], job_of: dict[int, int], runs: dict[int, _Run]
) -> Verdict:
    """What each run moved, against the scene's answer: one line per invariant, over both thresholds.

    The attempts are judged by the jobs the statement did move: a job that had to go and stayed is
    told once, by the jobs' line, and its attempts staying with it are right.
    """
    found: dict[str, list[str]] = {}

    def saw(check: str, seconds: int, what: str) -> None:
        found.setdefault(check, []).append(f"at {seconds} s, {what}")

    moved_sets = [run.moved for run in runs.values()]
    for seconds, run in runs.items():
        expected, before, after = run.expected, run.before, run.after
        archived = [job_id for job_id, _ in after.archived]
        if lost := set(before.jobs) - set(after.jobs) - set(archived):
            saw("lost", seconds, f"{len(lost)} jobs are in neither table ({_some(lost)})")
        if left := expected & set(after.jobs):
            saw("left", seconds, f"{len(left)} of {len(expected)} are still in job_queue ({_some(left)})")
        if extra := set(archived) - expected:
            kinds: dict[str, list[int]] = {}
            for job_id in sorted(extra):
                kinds.setdefault(said.get(job_id, "made by your statement"), []).append(job_id)
            saw(
                "extra",
                seconds,
                "; ".join(f"{len(ids)} {kind} ({_some(ids)})" for kind, ids in kinds.items()),
            )
        if twice := {j for j in archived if archived.count(j) > 1}:
            saw("twice", seconds, f"{len(twice)} jobs ({_some(twice)})")
        if changed := {j for j, row in after.archived if j in before.jobs and before.jobs[j] != row}:
            saw("changed", seconds, f"{len(changed)} jobs ({_some(changed)})")
        if touched := {j for j, row in after.jobs.items() if before.jobs.get(j, row) != row}:
            saw("touched", seconds, f"{len(touched)} jobs ({_some(touched)})")
        owed = {a for a, j in job_of.items() if j in run.moved}
        kept = [a for a, _ in after.archived_attempts]
        gone = set(before.attempts) - set(after.attempts) - set(kept)  # in neither table
        if vanished := owed & gone:
            saw(
                "attempts vanished",
                seconds,
                f"{len(vanished)} of {len(owed)} are in neither table ({_some(vanished)})",
            )
        if left := owed & set(after.attempts):
            saw(
                "attempts left",
                seconds,
                f"{len(left)} of {len(owed)} are still in job_attempts ({_some(left)})",
            )
        if lost := gone - owed:
            saw("attempts lost", seconds, f"{len(lost)} attempts are in neither table ({_some(lost)})")
        if extra := set(kept) - owed:
            saw("attempts extra", seconds, f"{len(extra)} attempts of jobs that stay ({_some(extra)})")
        twice = {a for a in kept if kept.count(a) > 1}
        changed = {a for a, row in after.archived_attempts if before.attempts.get(a, row) != row}
        if twice or changed:
            saw(
                "attempts changed",
                seconds,
                f"{len(twice)} twice, {len(changed)} changed ({_some(twice | changed)})",
            )

    (low, low_run), (high, high_run) = runs.items()
    low_expected, high_expected = low_run.expected, high_run.expected
    at_low, at_high = (len(moved) for moved in moved_sets)
    if (unit := _unit_read(runs)) is not None:
        verdict.expect(False, "", _unit_said(unit, runs))
    elif any(moved_sets):  # a statement that moves nothing is told so below
        verdict.expect(
            moved_sets[0] != moved_sets[1],
            f"it follows %(seconds)s: {at_low} jobs moved at {low} s, {at_high} at {high}",
            f"it took the same {at_low} jobs out of job_queue at %(seconds)s = {low} and = {high}, "
            f"where {len(low_expected)} and {len(high_expected)} had to go: it does not read %(seconds)s"
            # read as milliseconds, both thresholds fall under a second, below the age of every job
            # but the newest: what moved cannot tell that from a cut-off of its own
            + (
                ", or not in seconds (a cut-off written into the statement? %(seconds)s read as "
                "milliseconds, which puts both thresholds under a second?)"
                if _fits(runs, 1 / 1000)
                else " (a cut-off written into the statement?)"
            ),
        )
    lines = [
        ("left", "it moves every job of the pipe jobs finished at least %(seconds)s ago",
         "jobs of pipe jobs finished at least %(seconds)s ago stay behind"),
        ("lost", "no job vanished: each is in job_queue or in job_archive",
         "jobs vanished, deleted but never inserted into job_archive (insert what DELETE ... RETURNING "
         "hands over)"),
        ("extra", "it moves nothing else (younger pipe jobs, pipe jobs still running, open jobs)",
         "it moved jobs that had to stay (only the jobs of pipe jobs finished at least %(seconds)s ago go)"),
        ("twice", "job_archive holds each job once", "job_archive holds jobs twice (a join repeated them)"),
        ("changed", "every archived job arrived as it was, every column",
         "archived jobs differ from the row job_queue held (copy every column, as it was)"),
        ("touched", "the jobs that stay are untouched", "jobs that stay in job_queue were changed"),
        # one ✓ for the attempts of the moved jobs, and only once a job moved: deleted ones did not move
        ("attempts vanished",
         "the attempts of every moved job moved with it" if any(moved_sets) and "attempts left" not in found
         else None,
         "attempts of the moved jobs vanished, deleted but never inserted into job_attempt_archive (insert "
         "what DELETE ... RETURNING hands over)"),
        ("attempts left", None, "attempts of the moved jobs are still in job_attempts"),
        ("attempts lost", "no attempt of a job that stays vanished",
         "attempts of jobs that stay vanished, deleted from job_attempts but never archived"),
        ("attempts extra", "it moves no attempt of a job that stays",
         "it moved attempts of jobs that stay in job_queue"),
        ("attempts changed", "every attempt archived once, as it was",
         "attempts were archived twice or changed"),
    ]  # fmt: skip
    for check, held, wrong in lines:
        if check in found:
            verdict.expect(False, "", f"{wrong}: {'; '.join(found[check])}")
        elif held is not None:
            verdict.expect(True, held, "")
    return verdict
