"""Lesson 05's checker: the learner's `set_pipe_job_priority`, tried on a request that waits, runs, ends."""

from __future__ import annotations

import json

import psycopg

from pgqueue import labs, queries
from pgqueue.check.core import Verdict, install, written

NEW = 10  # the new priority the checker sets; every job starts at 100
UNKNOWN = 999  # a pipe job id that does not exist


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
        # pipe job `mine`: its entry job waits, one more waits, one runs, one is finished;
        # pipe job `other`: its entry job waits
        mine = conn.execute(_q()["priority_pipe_job"], {"request_id": 1}).fetchone()[0]
        conn.execute(_q()["priority_pipe_job"], {"request_id": 2})  # another request
        _place(conn, mine, taken_by=None)
        running = _place(conn, mine, taken_by="busy0worker")
        finished = _place(conn, mine, taken_by="done0worker", finished=True)
        before = _priorities(conn)
        waiting = [
            k for k in before if k[0] == "job" and before[k][0] == mine and k[1] not in (running, finished)
        ]

        if not _unknown_raises(conn, before, verdict):
            return verdict
        try:
            returned = conn.execute(_q()["priority_set"], {"pipe_job_id": mine, "priority": NEW}).fetchone()[
                0
            ]
        except psycopg.Error as exc:
            return verdict.refuse(f"set_pipe_job_priority({mine}, {NEW}) failed: {_error(exc)}")
        after = _priorities(conn)
        _compare(before, after, mine, waiting, running, finished, verdict)
        verdict.expect(
            returned == len(waiting),
            f"it returns how many waiting jobs changed ({len(waiting)})",
            f"set_pipe_job_priority({mine}, {NEW}) returned {returned!r}, but pipe job {mine} had "
            f"{len(waiting)} waiting jobs: it must return how many waiting jobs it changed",
        )
        _later_jobs_inherit(conn, mine, running, verdict)
    return verdict


def _place(conn: psycopg.Connection, pipe_job: int, taken_by: str | None, finished: bool = False) -> int:
    params = {"pipe_job_id": pipe_job, "taken_by": taken_by, "finished": True if finished else None}
    return conn.execute(_q()["priority_place"], params).fetchone()[0]


def _priorities(conn: psycopg.Connection) -> dict[tuple[str, int], tuple[int, int]]:
    """(kind, id) -> (pipe job id, priority) for every pipe job and job."""
    return {
        (kind, i): (pipe_job, priority) for kind, i, pipe_job, priority in conn.execute(_q()["priority_jobs"])
    }


def _unknown_raises(conn: psycopg.Connection, before: dict, verdict: Verdict) -> bool:
    try:
        returned = conn.execute(_q()["priority_set"], {"pipe_job_id": UNKNOWN, "priority": NEW}).fetchone()[0]
    except psycopg.errors.RaiseException:
        raised = True
    except psycopg.Error as exc:
        verdict.refuse(f"set_pipe_job_priority({UNKNOWN}, {NEW}) failed: {_error(exc)}")
        return False
    else:
        raised = False
    changed = _priorities(conn) != before
    verdict.expect(
        raised and not changed,
        f"an unknown pipe job ({UNKNOWN}) raises an error and changes nothing",
        f"set_pipe_job_priority({UNKNOWN}, {NEW}) "
        + ("raised" if raised else f"returned {returned!r}")
        + (" and changed priorities" if changed else "")
        + ": an unknown pipe job must raise (RAISE EXCEPTION), so that a mistyped id does not pass silently",
    )
    return not changed


def _compare(before, after, mine, waiting, running, finished, verdict: Verdict) -> None:
    kept = [k for k in waiting if after[k][1] != NEW]
    verdict.expect(
        after[("pipe job", mine)][1] == NEW,
        f"the pipe job's priority becomes {NEW}",
        f"pipe job {mine} still has priority {after[('pipe job', mine)][1]}: change pipe_job_queue too "
        "(create_jobs gives later steps the pipe job's priority)",
    )
    verdict.expect(
        not kept,
        f"its waiting jobs ({len(waiting)}) get priority {NEW}",
        f"waiting job(s) {[k[1] for k in kept]} of pipe job {mine} kept priority "
        f"{after[kept[0]][1] if kept else ''}: find_job would still hand them out in the old order",
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


def _later_jobs_inherit(conn: psycopg.Connection, mine: int, running: int, verdict: Verdict) -> None:
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
        got == NEW,
        f"a job created later (job {made}, the next step of running job {running}) inherits priority {NEW}",
        f"job {made}, created by create_jobs after the change, got priority {got}: create_jobs reads "
        f"pipe job {mine}'s priority, so the pipe job itself must change",
    )


def _error(exc: BaseException) -> str:
    if isinstance(exc, psycopg.Error) and exc.diag.message_primary:
        return exc.diag.message_primary
    return str(exc)
