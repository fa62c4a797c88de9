"""Lesson 05's checker: the learner's `set_pipe_job_priority`, tried on a request that waits, runs, ends."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field

import psycopg

from pgqueue import queries
from pgqueue.check.core import Verdict, checker, checks, said
from pgqueue.queues import labs

START = 100  # every job's priority before the change
ORDER_1 = (1, 3)  # pipelines of order 1 besides pipeline 2: a sibling's entry job waits at once
ORDER_2 = 4  # a pipeline of order 2: its pipe job waits with no job yet


@dataclass(frozen=True)
class _Row:
    """One pipe job or job as the checker saw it: whose it is, its priority, and every other column."""

    pipe_job: int
    request: int
    priority: int
    rest: dict


@dataclass
class _Scene:
    """What was drawn for one check: the pipe job asked about, its jobs, and the pipe jobs beside it."""

    request: int
    mine: int = 0
    siblings: list[int] = field(default_factory=list)  # other pipe jobs of the same request
    others: list[int] = field(default_factory=list)  # pipe jobs of another request
    blank: int = 0  # a waiting job with '' as its worker
    running: int = 0
    finished: int = 0


@checker(
    "your set_pipe_job_priority",
    "single-call",
    "priorities",
    examples=True,
    replaces=["set_pipe_job_priority"],
)
def priority_change(
    verdict: Verdict, lab: labs.Scratch, conn: psycopg.Connection, text: str, poc: str
) -> None:
    """Whether the learner's `set_pipe_job_priority` changes the pipe job and its waiting jobs only."""
    new = 1 + secrets.randbelow(START - 1)
    scene = _draw(conn)
    before = _rows(conn)
    mine = scene.mine
    waiting = [
        k
        for k, row in before.items()
        if k[0] == "job" and row.pipe_job == mine and k[1] not in (scene.running, scene.finished)
    ]
    unknown = max(i for kind, i in before if kind == "pipe job") + 1 + secrets.randbelow(1000)

    if not _unknown_raises(conn, before, unknown, new, verdict):
        return
    try:
        call = {"pipe_job_id": mine, "priority": new}
        returned = conn.execute(checks()["priority_set"], call).fetchone()[0]
    except psycopg.Error as exc:
        return verdict.refuse(f"set_pipe_job_priority({mine}, {new}) failed: {said(exc)}")
    after = _rows(conn)
    if not _same_rows(before, after, mine, verdict):
        return
    _compare(before, after, scene, waiting, new, verdict)
    verdict.expect(
        returned == len(waiting),
        f"it returns how many waiting jobs changed ({len(waiting)})",
        _returned(f"set_pipe_job_priority({mine}, {new})", before, after, mine, returned, len(waiting)),
    )
    _later_jobs_inherit(conn, mine, scene.running, new, verdict)


def _draw(conn: psycopg.Connection) -> _Scene:
    """The scene, its ids and sizes drawn: pipe job `mine` (pipeline 2) with its entry job and 1-3
    more waiting (one with '' as its worker: the lab's other way to say nobody), one running, one
    finished; 1-2 other pipe jobs of the same request, an order-1 one with jobs waiting; a pipe job
    of another request with jobs waiting. They are made in a drawn order, so no id says whose is whose.
    """
    request = 1000 + secrets.randbelow(9000)
    scene = _Scene(request)
    other_request = request + (1 if secrets.randbelow(2) else -1) * (1 + secrets.randbelow(500))
    made = [("mine", 2), ("sibling", secrets.choice(ORDER_1)), ("other", 2)]
    if secrets.randbelow(2):
        made.append(("sibling", ORDER_2))
    secrets.SystemRandom().shuffle(made)
    for role, pipe_id in made:
        params = {"request_id": other_request if role == "other" else request, "pipe_id": pipe_id}
        pipe_job = conn.execute(checks()["priority_pipe_job"], params).fetchone()[0]
        if role == "mine":
            scene.mine = pipe_job
        else:
            (scene.siblings if role == "sibling" else scene.others).append(pipe_job)
        if role != "mine" and pipe_id != ORDER_2:
            _place(conn, pipe_job, taken_by=None)  # one more waiting beside the entry job
    scene.blank = _place(conn, scene.mine, taken_by="")
    for _ in range(secrets.randbelow(3)):
        _place(conn, scene.mine, taken_by=None)
    scene.running = _place(conn, scene.mine, taken_by="busy0worker")
    scene.finished = _place(conn, scene.mine, taken_by="done0worker", finished=True)
    return scene


def _place(conn: psycopg.Connection, pipe_job: int, taken_by: str | None, finished: bool = False) -> int:
    params = {"pipe_job_id": pipe_job, "taken_by": taken_by, "finished": True if finished else None}
    return conn.execute(checks()["priority_place"], params).fetchone()[0]


def _rows(conn: psycopg.Connection) -> dict[tuple[str, int], _Row]:
    """(kind, id) -> the whole row, for every pipe job and job."""
    return {
        (kind, i): _Row(pipe_job, request, priority, rest)
        for kind, i, pipe_job, request, priority, rest in conn.execute(checks()["priority_rows"])
    }


def _returned(call: str, before: dict, after: dict, mine: int, returned: object, waiting: int) -> str:
    """The ✗ line for a wrong count, with what else the count is, as the rows show."""
    changed = sum(1 for k in before if k[0] == "job" and after[k].priority != before[k].priority)
    if returned == changed:
        return (
            f"{call} returned {returned!r}, as many as the jobs it changed, but pipe job {mine} had "
            f"{waiting} waiting jobs: once it changes those and no others, it must return {waiting}"
        )
    said = (
        f"{call} returned {returned!r}, but pipe job {mine} had {waiting} waiting jobs: it must return how "
        f"many waiting jobs it changed ({waiting})"
    )
    pipe_jobs = sum(1 for k in before if k[0] == "pipe job" and after[k] != before[k])
    jobs = sum(1 for k in before if k[0] == "job" and before[k].pipe_job == mine)
    if pipe_jobs and returned == pipe_jobs:
        return (
            f"{said}; {returned} is as many as the pipe jobs it updated, the count of its UPDATE of "
            "pipe_job_queue: GET DIAGNOSTICS ... ROW_COUNT counts the statement run just before it, so read "
            "it right after the UPDATE of job_queue"
        )
    if returned == jobs:
        return f"{said}; {returned} is as many as all jobs of pipe job {mine}, the running and finished too"
    return said


def _unknown_raises(conn: psycopg.Connection, before: dict, unknown: int, new: int, verdict: Verdict) -> bool:
    # any error will do, with any SQLSTATE and words of the learner's: a function that is
    # broken for every id is refused by the call on a known one next
    error = ""
    try:
        call = {"pipe_job_id": unknown, "priority": new}
        returned = conn.execute(checks()["priority_set"], call).fetchone()[0]
    except psycopg.Error as exc:
        raised, error = True, f" ({exc.sqlstate} {said(exc)})"
    else:
        raised = False
    changed = _rows(conn) != before
    verdict.expect(
        raised and not changed,
        f"an unknown pipe job ({unknown}) raises an error{error} and changes nothing",
        f"set_pipe_job_priority({unknown}, {new}) "
        + ("raised" if raised else f"returned {returned!r}")
        + (" and changed rows" if changed else "")
        + ": an unknown pipe job must raise (RAISE EXCEPTION), so that a mistyped id does not pass silently",
    )
    return not changed


def _same_rows(before: dict, after: dict, mine: int, verdict: Verdict) -> bool:
    """Whether the call left every row there and made none: the rest is compared row by row."""
    gone, new = sorted(set(before) - set(after)), sorted(set(after) - set(before))
    return verdict.expect(
        not gone and not new,
        "it adds and deletes no row",
        f"after set_pipe_job_priority({mine}, ...) "
        + " and ".join(
            f"{', '.join(f'{kind} {i}' for kind, i in keys)} {what}"
            for keys, what in ((gone, "are gone"), (new, "appeared"))
            if keys
        )
        + ": change the priorities in place (UPDATE), nothing else",
    )


def _named(keys: list[tuple[str, int]]) -> str:
    """Rows in plain words: 'job 4', 'job 4 and job 5', 'pipe job 2, job 3 and job 4'."""
    names = [f"{kind} {i}" for kind, i in keys]
    return " and ".join(names) if len(names) < 3 else ", ".join(names[:-1]) + " and " + names[-1]


def _ids(ids: object) -> str:
    return ", ".join(map(str, sorted(ids)))


def _columns(was: _Row, now: _Row) -> list[str]:
    """The columns besides the priority whose value a call changed."""
    return sorted(c for c in was.rest.keys() | now.rest.keys() if was.rest.get(c) != now.rest.get(c))


def _compare(before: dict, after: dict, scene: _Scene, waiting: list, new: int, verdict: Verdict) -> None:
    mine, blank = scene.mine, scene.blank
    kept = [k for k in waiting if after[k].priority != new]
    why = ""
    if kept == [("job", blank)]:
        why = f" (job {blank} has '' as its worker, which in this lab means nobody too: IS NULL alone"
        why += " misses it)"
    verdict.expect(
        after[("pipe job", mine)].priority == new,
        f"the pipe job's priority becomes {new}",
        f"pipe job {mine} still has priority {after[('pipe job', mine)].priority}: change pipe_job_queue too "
        "(create_jobs gives later steps the pipe job's priority)",
    )
    verdict.expect(
        not kept,
        f"its waiting jobs ({len(waiting)}, one with '' as its worker) get priority {new}",
        f"waiting job(s) {[k[1] for k in kept]} of pipe job {mine} kept priority "
        f"{after[kept[0]].priority if kept else ''}{why}: find_job would still hand them out in the old "
        "order",
    )
    running, finished = scene.running, scene.finished
    touched = [k[1] for k in (("job", running), ("job", finished)) if after[k] != before[k]]
    verdict.expect(
        not touched,
        f"its running job ({running}) and finished job ({finished}) stay as they were",
        f"job(s) {touched} changed although taken or finished ({running} runs, {finished} is finished): "
        "change only jobs that still wait (not assigned, job_finished IS NULL)",
    )
    more = [(k, _columns(before[k], after[k])) for k in [("pipe job", mine), *waiting]]
    more = [(k, columns) for k, columns in more if columns]
    verdict.expect(
        not more,
        "on those, nothing but the priority changes",
        f"{_named([more[0][0]])} of pipe job {mine} changed more than its priority ({', '.join(more[0][1])} "
        "too): set the priority alone"
        if more
        else "",
    )
    siblings = [k for k in before if before[k].pipe_job in scene.siblings and after[k] != before[k]]
    others = [k for k in before if before[k].request != scene.request and after[k] != before[k]]
    verdict.expect(
        not siblings,
        f"the other pipe job(s) of request {scene.request} ({_ids(scene.siblings)}) and their jobs stay as "
        "they were",
        f"{_named(siblings)} changed too: that is pipe job(s) {_ids({before[k].pipe_job for k in siblings})}"
        f" and its jobs, not pipe job {mine}, though of the same request {scene.request}"
        + (
            "; the priority is set for the pipe job asked for, not its whole request (match "
            "pipe_job_id = p_pipe_job_id, not request_id)"
            if not others
            else ""
        ),
    )
    verdict.expect(
        not others,
        f"pipe jobs of other requests ({_ids(scene.others)}) and their jobs stay as they were",
        f"{_named(others)} of another pipe job changed too: is a WHERE on pipe_job_id missing?",
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
        verdict.refuse(f"handing over running job {running} with create_jobs failed: {said(exc)}")
        return
    got = _rows(conn)[("job", made)].priority
    verdict.expect(
        got == new,
        f"a job created later (job {made}, the next step of running job {running}) inherits priority {new}",
        f"job {made}, created by create_jobs after the change, got priority {got}: create_jobs reads "
        f"pipe job {mine}'s priority, so the pipe job itself must change",
    )
