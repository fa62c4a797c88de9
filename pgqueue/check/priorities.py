"""Lesson 05's checker: the learner's `set_pipe_job_priority`, tried on a request that waits, runs, ends."""

from __future__ import annotations

import json
import secrets

import psycopg

from pgqueue import labs, queries
from pgqueue.check.core import Verdict, install, written

START = 100  # every job's priority before the change


def _q() -> queries.Queries:
    return queries.load("clients/check.sql")


def priority_change(text: str, poc: str = "single-call") -> Verdict:
    """Whether the learner's `set_pipe_job_priority` changes the pipe job and its waiting jobs only."""
    verdict = Verdict("your set_pipe_job_priority")
    if written(text, verdict) is None:
        return verdict
    with labs.scratch(poc, "priorities", examples=True) as lab, lab.connect() as conn:
        if not install(conn, text, verdict, replaces=["set_pipe_job_priority"]):
            return verdict
        # pipe job `mine`: its entry job waits, and 1-3 more wait (one of them with '' as its
        # worker: the lab's other way to say nobody), one runs, one is finished; pipe job
        # `other`: its entry job waits. Sizes, the new priority and the request ids are drawn.
        new = 1 + secrets.randbelow(START - 1)
        request = 1 + secrets.randbelow(10_000)
        mine = conn.execute(_q()["priority_pipe_job"], {"request_id": request}).fetchone()[0]
        conn.execute(_q()["priority_pipe_job"], {"request_id": request + 1})  # another request
        blank = _place(conn, mine, taken_by="")
        for _ in range(secrets.randbelow(3)):
            _place(conn, mine, taken_by=None)
        running = _place(conn, mine, taken_by="busy0worker")
        finished = _place(conn, mine, taken_by="done0worker", finished=True)
        before = _priorities(conn)
        waiting = [
            k for k in before if k[0] == "job" and before[k][0] == mine and k[1] not in (running, finished)
        ]
        unknown = max(i for kind, i in before if kind == "pipe job") + 1 + secrets.randbelow(1000)

        if not _unknown_raises(conn, before, unknown, new, verdict):
            return verdict
        try:
            call = {"pipe_job_id": mine, "priority": new}
            returned = conn.execute(_q()["priority_set"], call).fetchone()[0]
        except psycopg.Error as exc:
            return verdict.refuse(f"set_pipe_job_priority({mine}, {new}) failed: {_error(exc)}")
        after = _priorities(conn)
        _compare(before, after, mine, (waiting, blank, running, finished), new, verdict)
        verdict.expect(
            returned == len(waiting),
            f"it returns how many waiting jobs changed ({len(waiting)})",
            f"set_pipe_job_priority({mine}, {new}) returned {returned!r}, but pipe job {mine} had "
            f"{len(waiting)} waiting jobs: it must return how many waiting jobs it changed",
        )
        _later_jobs_inherit(conn, mine, running, new, verdict)
    return verdict


def _place(conn: psycopg.Connection, pipe_job: int, taken_by: str | None, finished: bool = False) -> int:
    params = {"pipe_job_id": pipe_job, "taken_by": taken_by, "finished": True if finished else None}
    return conn.execute(_q()["priority_place"], params).fetchone()[0]


def _priorities(conn: psycopg.Connection) -> dict[tuple[str, int], tuple[int, int]]:
    """(kind, id) -> (pipe job id, priority) for every pipe job and job."""
    return {
        (kind, i): (pipe_job, priority) for kind, i, pipe_job, priority in conn.execute(_q()["priority_jobs"])
    }


def _unknown_raises(conn: psycopg.Connection, before: dict, unknown: int, new: int, verdict: Verdict) -> bool:
    # any error will do, with any SQLSTATE and words of the learner's: a function that is
    # broken for every id is refused by the call on a known one next
    error = ""
    try:
        returned = conn.execute(_q()["priority_set"], {"pipe_job_id": unknown, "priority": new}).fetchone()[0]
    except psycopg.Error as exc:
        raised, error = True, f" ({exc.sqlstate} {_error(exc)})"
    else:
        raised = False
    changed = _priorities(conn) != before
    verdict.expect(
        raised and not changed,
        f"an unknown pipe job ({unknown}) raises an error{error} and changes nothing",
        f"set_pipe_job_priority({unknown}, {new}) "
        + ("raised" if raised else f"returned {returned!r}")
        + (" and changed priorities" if changed else "")
        + ": an unknown pipe job must raise (RAISE EXCEPTION), so that a mistyped id does not pass silently",
    )
    return not changed


def _compare(before, after, mine, jobs, new, verdict: Verdict) -> None:
    waiting, blank, running, finished = jobs
    kept = [k for k in waiting if after[k][1] != new]
    why = (
        f" (job {blank} has '' as its worker, which in this lab means nobody too: IS NULL alone misses it)"
        if kept == [("job", blank)]
        else ""
    )
    verdict.expect(
        after[("pipe job", mine)][1] == new,
        f"the pipe job's priority becomes {new}",
        f"pipe job {mine} still has priority {after[('pipe job', mine)][1]}: change pipe_job_queue too "
        "(create_jobs gives later steps the pipe job's priority)",
    )
    verdict.expect(
        not kept,
        f"its waiting jobs ({len(waiting)}, one with '' as its worker) get priority {new}",
        f"waiting job(s) {[k[1] for k in kept]} of pipe job {mine} kept priority "
        f"{after[kept[0]][1] if kept else ''}{why}: find_job would still hand them out in the old order",
    )
    touched = [k[1] for k in (("job", running), ("job", finished)) if after[k] != before[k]]
    verdict.expect(
        not touched,
        f"its running job ({running}) and finished job ({finished}) keep their priority",
        f"job(s) {touched} changed although taken or finished ({running} runs, {finished} is finished): "
        "change only jobs that still wait (not assigned, job_finished IS NULL)",
    )
    others = [k for k in before if before[k][0] != mine and after[k] != before[k]]
    verdict.expect(
        not others,
        "other pipe jobs and their jobs keep their priority",
        f"{' and '.join(f'{kind} {i}' for kind, i in others)} of another pipe job changed too: "
        "is a WHERE on pipe_job_id missing?",
    )


def _later_jobs_inherit(
    conn: psycopg.Connection, mine: int, running: int, new: int, verdict: Verdict
) -> None:
    """The running job hands over (create_jobs): the next step's job must have the new priority."""
    try:
        (made,) = conn.execute(
            queries.load("clients/single_call.sql")["create_jobs"],
            {"job_ids": [running], "payloads": json.dumps([{}])},
        ).fetchone()[0]
    except psycopg.Error as exc:
        verdict.refuse(f"handing over running job {running} with create_jobs failed: {_error(exc)}")
        return
    got = _priorities(conn)[("job", made)][1]
    verdict.expect(
        got == new,
        f"a job created later (job {made}, the next step of running job {running}) inherits priority {new}",
        f"job {made}, created by create_jobs after the change, got priority {got}: create_jobs reads "
        f"pipe job {mine}'s priority, so the pipe job itself must change",
    )


def _error(exc: BaseException) -> str:
    if isinstance(exc, psycopg.Error) and exc.diag.message_primary:
        return exc.diag.message_primary
    return str(exc)
