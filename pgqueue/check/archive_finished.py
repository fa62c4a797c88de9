"""Lesson 11's checker: the learner's statement that moves old finished work into the archives."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import psycopg
from psycopg import sql

from pgqueue import queries
from pgqueue.check.core import Refused, Verdict, checker, where
from pgqueue.lab.bloat import churn


def _q() -> queries.Queries:
    return queries.load("clients/check_archive_finished.sql")


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
    conn.execute(queries.load("clients/bloat.sql")["add_pipe_jobs"], {"jobs": rng.randint(3, 10)})  # waiting

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


@checker("your archive", "hardened", examples=True, sends=("seconds",))
def archive_finished(verdict, lab, conn, text, poc):
    """Try an archiving statement on a scratch hardened lab, at two thresholds `%(seconds)s` drawn anew.

    The lab holds pipe jobs finished long ago, between the thresholds, a little ago and just now
    (some of the oldest jobs with two attempts), jobs finished long ago whose pipe job still runs,
    running jobs and waiting ones. At each threshold, in a transaction rolled back afterwards, the
    statement must move exactly the jobs of the pipe jobs finished at least `%(seconds)s` ago into
    job_archive, and their attempts into job_attempt_archive: every row once and unchanged, none
    lost, nothing else moved or touched.
    """
    q, rng = _q(), secrets.SystemRandom()
    low, high = rng.randint(60, 900), 3600 * rng.randint(2, 6)
    runs: dict[int, _Run] = {}
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
                raise Refused(_archive_refused(exc, text)) from None
            runs[seconds] = _Run(expected, read_as, before, _Tables.read(conn))
    _judge_archive(verdict, said, job_of, runs)


def _archive_refused(exc: psycopg.Error, text: str) -> str:
    """PostgreSQL's refusal of an archiving statement, where in it, and what usually causes it."""
    said = exc.diag.message_primary or str(exc)
    at = where(text, exc, with_parameters=True)
    if isinstance(exc, psycopg.errors.ForeignKeyViolation):
        at += (
            "; job_attempts points at job_queue, and a job you moved still had attempts there: move every "
            "attempt of each job you move (by its job_id), in the same statement"
        )
    elif "multiple commands" in said:
        at += "; write one statement (data-modifying WITH queries), so nothing happens in between"
    return f"PostgreSQL refused it: {said}{at}"


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
            f"where {len(low_expected)} and {len(high_expected)} had to go: what it moves does not follow "
            "%(seconds)s"
            # read as milliseconds, both thresholds fall under a second, below the age of every job
            # but the newest: what moved cannot tell that from a cut-off of its own
            + (
                " (a cut-off written into the statement? %(seconds)s read as milliseconds, which puts "
                "both thresholds under a second?)"
                if _fits(runs, 1 / 1000)
                else " (a cut-off written into the statement, or an OR without parentheses that lets "
                "finished jobs through whatever their age?)"
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
