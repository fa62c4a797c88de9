"""Lesson 06's checker: the learner's `gather_batch`, asked about fan-outs made with create_jobs."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from pgqueue import labs, queries
from pgqueue.check.core import Verdict, install, written

GATHERER = ("movemonitor", "1.0.0")  # gathers the four classifications of pipeline 5
OTHER_GATHERER = ("merging_results", "1.5.2")  # gathers the four classifications of pipeline 1
CHECKER_UUID = "0000000c0de6"  # the reference find_job beats under this uuid (rolled back)


def _q() -> queries.Queries:
    return queries.load("clients/check.sql")


@dataclass
class FanOut:
    """One request fanned out to a parallel set; `handed` are the jobs its finished members made."""

    parallel: list[int]
    handed: list[int]


class Lab:
    """A scenario's hands on the scratch lab: requests, fan-outs and hand-overs by create_jobs."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn

    def create_jobs(self, job_ids: list[int], n: int = 1) -> list[int]:
        """Finish `job_ids` and make `n` jobs of the next step (a fan-out when n > 1)."""
        params = {"job_ids": job_ids, "payloads": Jsonb([{} for _ in range(n)])}
        return self.conn.execute(_q()["gather_create_jobs"], params).fetchone()[0]

    def entry(self, pipe_id: int, priority: int = 100) -> int:
        """A new request for pipeline `pipe_id`; its entry job."""
        params = {"pipe_id": pipe_id, "priority": priority}
        pipe_job = self.conn.execute(_q()["gather_request"], params).fetchone()[0]
        return self.conn.execute(_q()["gather_entry_job"], {"pipe_job_id": pipe_job}).fetchone()[0]

    def fan_out(self, finished: int = 4, priority: int = 100, pipe_id: int = 5) -> FanOut:
        """A request fanned out to four parallel jobs, of which the first `finished` handed over."""
        job = self.entry(pipe_id, priority)
        if pipe_id == 5:  # assigner -> wearing_compliance, which fans out
            (job,) = self.create_jobs([job])
        parallel = self.create_jobs([job], 4)
        handed = [self.create_jobs([member])[0] for member in parallel[:finished]]
        return FanOut(parallel, handed)

    def take(self, job_ids: list[int]) -> None:
        """Mark jobs as claimed by a gatherer already."""
        self.conn.execute(_q()["gather_take"], {"job_ids": job_ids})


@dataclass
class Scenario:
    """One situation a gatherer meets, what holds when the learner's answer is right."""

    held: str
    situation: str  # said before what went wrong
    build: Callable[[Lab], object]
    asks: tuple[str, str] = GATHERER


def _scenarios() -> list[Scenario]:
    def earlier_incomplete(lab: Lab) -> None:
        lab.fan_out(finished=3)
        lab.fan_out(finished=4)

    def better_incomplete(lab: Lab) -> None:
        lab.fan_out(finished=4, priority=100)
        lab.fan_out(finished=2, priority=1)

    def none_complete(lab: Lab) -> None:
        lab.fan_out(finished=3)
        lab.fan_out(finished=1, priority=1)

    def by_priority(lab: Lab) -> None:
        lab.fan_out(priority=100)
        lab.fan_out(priority=100)
        lab.fan_out(priority=10)

    def oldest_first(lab: Lab) -> None:
        lab.fan_out(priority=50)
        lab.fan_out(priority=50)

    def taken(lab: Lab) -> None:
        lab.take(lab.fan_out().handed)
        lab.fan_out()

    def entries(lab: Lab) -> None:
        lab.fan_out()
        lab.entry(5)
        lab.entry(5, priority=1)

    def both_gatherers(lab: Lab) -> None:
        lab.fan_out(pipe_id=1, priority=1)
        lab.fan_out(pipe_id=5)

    return [
        Scenario(
            "one complete set: its jobs are handed out together",
            "with one complete set",
            lambda lab: lab.fan_out(),
        ),
        Scenario(
            "an incomplete set created earlier does not hide a complete one",
            "with an incomplete set created before a complete one",
            earlier_incomplete,
        ),
        Scenario(
            "an incomplete set with a better priority does not hide a complete one",
            "with an incomplete set of priority 1 and a complete one of priority 100",
            better_incomplete,
        ),
        Scenario(
            "no complete set: NULL",
            "with two incomplete sets and no complete one",
            none_complete,
        ),
        Scenario(
            "of complete sets, the one with the best priority comes first",
            "with complete sets of priority 100, 100 and 10",
            by_priority,
        ),
        Scenario(
            "of complete sets of one priority, the oldest comes first",
            "with two complete sets of the same priority",
            oldest_first,
        ),
        Scenario(
            "a set a gatherer took already is not handed out again",
            "with one complete set taken already and another waiting",
            taken,
        ),
        Scenario(
            "entry jobs are never gathered (they come from no parallel set)",
            "asked for the assigner, whose entry jobs wait",
            entries,
            ("assigner", "1.0.0"),
        ),
        Scenario(
            "a gatherer receives only its own process's sets",
            f"asked for {OTHER_GATHERER[0]} while its set and {GATHERER[0]}'s wait",
            both_gatherers,
            OTHER_GATHERER,
        ),
        Scenario(
            "another version of the process receives nothing",
            f"asked for {GATHERER[0]} 2.0.0 while {GATHERER[0]} {GATHERER[1]}'s set waits",
            lambda lab: lab.fan_out(),
            (GATHERER[0], "2.0.0"),
        ),
    ]


def gather_batch(text: str, poc: str = "single-call") -> Verdict:
    """Whether the learner's `gather_batch` hands a gatherer the batch find_job would, in ten situations.

    Each situation is built with create_jobs on a scratch lab (up to the gather step, with the
    example pipelines) inside a transaction that is rolled back afterwards; the learner's answer
    is compared with the jobs find_job itself hands out in multi mode.
    """
    verdict = Verdict("your gather_batch")
    if written(text, verdict) is None:
        return verdict
    with labs.scratch(poc, "gather", examples=True) as lab, lab.connect() as conn:
        if not install(conn, text, verdict, replaces=["gather_batch"]):
            return verdict
        for scenario in _scenarios():
            if not _try(conn, scenario, verdict):
                break
    return verdict


def _try(conn: psycopg.Connection, scenario: Scenario, verdict: Verdict) -> bool:
    """Build one situation, ask both, judge; False when the learner's function failed to run."""
    name, version = scenario.asks
    params = {"name": name, "version": version}
    with conn.transaction(force_rollback=True):
        scenario.build(Lab(conn))
        try:
            with conn.transaction(force_rollback=True):
                mine = conn.execute(_q()["gather_call"], params).fetchone()[0]
        except psycopg.Error as exc:
            verdict.refuse(
                f"{scenario.situation}, your gather_batch failed: {exc.diag.message_primary or exc}"
            )
            return False
        with conn.transaction(force_rollback=True):
            answer = conn.execute(_q()["gather_reference"], {**params, "uuid": CHECKER_UUID}).fetchone()[0]
        reference = sorted(job["job_id"] for job in json.loads(answer)) if answer.startswith("[") else None
        if mine is not None and not (isinstance(mine, list) and all(isinstance(i, int) for i in mine)):
            verdict.refuse(f"gather_batch must return integer[] (or NULL); yours returned {mine!r}")
            return False
        got = sorted(mine) if mine else None
        verdict.expect(
            got == reference,
            scenario.held,
            f"{scenario.situation}: {_what_is_wrong(conn, got, reference, scenario.asks)}",
        )
    return True


def _shown(ids: list[int] | None) -> str:
    return "NULL" if ids is None else "{" + ",".join(map(str, ids)) + "}"


def _what_is_wrong(
    conn: psycopg.Connection, got: list[int] | None, reference: list[int] | None, asks: tuple[str, str]
) -> str:
    """The learner's answer, against find_job's, in plain words naming the jobs."""
    if got is None:
        return f"set {_shown(reference)} was complete but you answered NULL"
    with conn.cursor(row_factory=dict_row) as cur:
        rows = {r["job_id"]: r for r in cur.execute(_q()["gather_jobs"], {"job_ids": got})}
    for job_id in got:
        row = rows.get(job_id)
        if row is None:
            return f"you handed out job {job_id}, which does not exist"
        if (row["job_process_name"], row["job_process_version"]) != asks:
            return (
                f"you handed out job {job_id}, which waits for {row['job_process_name']} "
                f"{row['job_process_version']}, not for {asks[0]} {asks[1]}"
            )
        if row["job_creater_set_elements"] is None:
            return f"you handed out job {job_id}, an entry job: it comes from no parallel set"
        if row["taken"] or row["job_finished"] is not None:
            return f"you handed out job {job_id}, which a gatherer has taken already"
    sets = {tuple(rows[j]["job_creater_set_elements"]) for j in got}
    if len(sets) > 1:
        return f"you handed out {_shown(got)}, which mixes the jobs of {len(sets)} parallel sets"
    (parallel,) = sets
    with conn.cursor(row_factory=dict_row) as cur:
        members = list(cur.execute(_q()["gather_jobs"], {"job_ids": list(parallel)}))
    running = [m["job_id"] for m in members if m["job_finished"] is not True]
    if running:
        return (
            f"you handed out set {_shown(got)} while job {running[0]} of its parallel set "
            f"{_shown(list(parallel))} had not finished"
        )
    if reference is None:
        return f"you handed out set {_shown(got)}; find_job hands out nothing here"
    if set(got) < set(reference):
        return f"you handed out {_shown(got)}, only part of the waiting set {_shown(reference)}"
    return f"you handed out set {_shown(got)}, but set {_shown(reference)} comes first (priority, then age)"
