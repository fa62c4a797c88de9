"""Lesson 05's checker: the learner's `set_pipe_job_priority`, tried on a request that waits, runs, ends."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg

from pgqueue import queries
from pgqueue.check.core import Call, Hold, Verdict, checker, checks, holding, said
from pgqueue.queues import labs
from pgqueue.wait import Timeout

START = 100  # every job's priority before the change
TAKE_WAIT_MS = 3000  # a worker taking a job while the change is held gives up on a lock after this
ORDER_1 = (1, 3)  # pipelines of order 1 besides pipeline 2: a sibling's entry job waits at once
ORDER_2 = 4  # a pipeline of order 2: its pipe job waits with no job yet


def _raised() -> int:
    """A new priority above START: the main change raises it (lower urgency), the quiet pipe job's
    lowers it, so a change that only lowers (least) or only raises (greatest) is caught every time."""
    return START + 1 + secrets.randbelow(START)


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
    finished_by_nobody: int = 0  # finished, with no worker: "nobody" alone does not say it waits
    quiet: int = 0  # a pipe job of yet another request with no job yet (its pipeline is of order 2)

    @property
    def taken(self) -> tuple[int, int, int]:
        """The jobs of pipe job `mine` that do not wait: one running, two finished."""
        return self.running, self.finished, self.finished_by_nobody


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
    new = _raised()
    scene = _draw(conn)
    # a finished job already at the new priority (an earlier change to it): a count of the jobs at
    # the new priority, taken after the UPDATE, counts it too
    conn.execute(checks()["priority_job_set"], {"job_id": scene.finished, "priority": new})
    before = _rows(conn)
    mine = scene.mine
    waiting = [
        k
        for k, row in before.items()
        if k[0] == "job"
        and row.pipe_job == mine
        and k[1] not in (scene.running, scene.finished, scene.finished_by_nobody)
    ]
    unknown = max(i for kind, i in before if kind == "pipe job") + 1 + secrets.randbelow(1000)

    if not _unknown_raises(conn, before, unknown, new, verdict):
        return
    quiet = _quiet_pipe_job(conn, scene.quiet, mine, verdict)
    before = _rows(conn)
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
        _returned(
            f"set_pipe_job_priority({mine}, {new})", before, after, mine, (returned, quiet), len(waiting)
        ),
    )
    _later_jobs_inherit(conn, mine, scene.running, new, verdict)
    if not verdict.wrong:  # the forced schedules judge a change that is right when nothing races it
        _taken_meanwhile(lab, conn, verdict)
    if not verdict.wrong:
        _locked_by_a_claim(lab, conn, verdict)
    if not verdict.wrong:
        _during_a_hand_over(lab, conn, verdict)


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
            _place(conn, pipe_job, taken_by="")  # one more waiting beside the entry job, its worker ''

    scene.blank = _place(conn, scene.mine, taken_by="")
    for _ in range(secrets.randbelow(3)):
        _place(conn, scene.mine, taken_by=None)
    scene.running = _place(conn, scene.mine, taken_by="busy0worker")
    scene.finished = _place(conn, scene.mine, taken_by="done0worker", finished=True)
    scene.finished_by_nobody = _place(conn, scene.mine, taken_by=None, finished=True)
    quiet_request = 2 * request - other_request  # another request than both
    params = {"request_id": quiet_request, "pipe_id": ORDER_2}
    scene.quiet = conn.execute(checks()["priority_pipe_job"], params).fetchone()[0]
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


def _returned(call: str, before: dict, after: dict, mine: int, returns: tuple, waiting: int) -> str:
    """The ✗ line for a wrong count, with what else the count is, as the rows show; `returns` is what
    the call returned, and what it returned for a pipe job with no job waiting."""
    returned, quiet = returns
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
    if returned in (1, True) and quiet in (0, False):
        return (
            f"{said}; it returned 0 for a pipe job with no job waiting: is it FOUND, made a number? "
            "FOUND says whether the UPDATE changed a row, not how many: GET DIAGNOSTICS ... = ROW_COUNT "
            "right after the UPDATE of job_queue"
        )
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
    now, was = after[("pipe job", mine)].priority, before[("pipe job", mine)].priority
    verdict.expect(
        now == new,
        f"the pipe job's priority becomes {new} (it was {was}: a priority may go up as well as down)",
        f"pipe job {mine} has priority {now}, where {new} was asked (it was {was}): "
        + (
            "change pipe_job_queue too (create_jobs gives later steps the pipe job's priority)"
            if now == was and any(after[k].priority == new for k in waiting)
            else "set the priority asked for, whether it is above or below the one before (least()?)"
            if now == min(was, new)
            else "set the priority asked for, the value of p_priority"
        ),
    )
    verdict.expect(
        not kept,
        f"its waiting jobs ({len(waiting)}, one with '' as its worker) get priority {new}",
        f"waiting job(s) {[k[1] for k in kept]} of pipe job {mine} kept priority "
        f"{after[kept[0]].priority if kept else ''}{why}: find_job would still hand them out in the old "
        "order",
    )
    running, finished, nobodys = scene.running, scene.finished, scene.finished_by_nobody
    touched = [k[1] for k in (("job", running), ("job", finished), ("job", nobodys)) if after[k] != before[k]]
    verdict.expect(
        not touched,
        f"its running job ({running}) and finished jobs ({finished}, and {nobodys} with no worker) stay "
        "as they were",
        f"job(s) {touched} changed although taken or finished ({running} runs, {finished} is finished, "
        f"{nobodys} is finished and has no worker): change only jobs that still wait (not assigned, "
        "job_finished IS NULL)"
        + (": no worker alone does not say a job waits" if touched == [nobodys] else ""),
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


def _quiet_pipe_job(conn: psycopg.Connection, quiet: int, mine: int, verdict: Verdict) -> object:
    """A pipe job that waits with no job yet (its pipeline is of order 2): it is known, so no error, and
    0 jobs changed. What the call returned, or None if it raised (then pipe job `mine`, which has
    jobs, is tried too, rolled back, to tell a raise for every pipe job from one for a quiet one)."""
    new = 1 + secrets.randbelow(START - 1)
    call, before = f"set_pipe_job_priority({quiet}, {new})", _rows(conn)
    try:
        returned = _set(conn, quiet, new)
    except psycopg.Error as exc:
        try:
            with conn.transaction(force_rollback=True):
                _set(conn, mine, new)
            cause = (
                "raise for a pipe job that is not there, whatever its jobs (IF NOT FOUND right after the "
                "UPDATE of pipe_job_queue, not of job_queue)"
            )
        except psycopg.Error:
            cause = (
                f"it raises for pipe job {mine}, which has jobs, too: it raises whatever the id (an error "
                "built into a LANGUAGE sql expression may be raised when the query is planned, not when the "
                "row is missing: raise from plpgsql, under IF NOT FOUND)"
            )
        verdict.expect(
            False,
            "",
            f"{call} raised ({said(exc)}), but pipe job {quiet} exists: it has no job yet, as a pipe job of "
            f"a pipeline of order 2 waits for its order 1 to finish; {cause}",
        )
        return None
    now = conn.execute(checks()["priority_of_pipe_job"], {"pipe_job_id": quiet}).fetchone()[0]
    after = _rows(conn)
    others = [k for k in before if k != ("pipe job", quiet) and after[k] != before[k]]
    verdict.expect(
        not others,
        f"a pipe job with no job yet ({quiet}) changes no other pipe job's jobs",
        f"{call}, for a pipe job with no job yet, changed {_named(others)} of other pipe jobs: is the "
        "WHERE's test of pipe_job_id missing, or joined by an OR without parentheses? (AND binds before OR)",
    )
    verdict.expect(
        returned == 0 and now == new,
        f"a pipe job with no job yet ({quiet}, of a pipeline of order 2) gets priority {new}; 0 is returned",
        f"{call}, for a pipe job with no job yet, "
        + (f"left its priority at {now}, where it must become {new}" if now != new else f"got priority {new}")
        + (
            f", and returned {returned!r}: it has no waiting job, so it must return 0"
            if returned != 0
            else ""
        ),
    )
    return returned


def _taken_meanwhile(lab: labs.Scratch, conn: psycopg.Connection, verdict: Verdict) -> None:
    """A worker takes one of the waiting jobs while the call runs: after anything it read before its
    first UPDATE of job_queue, before that UPDATE changes a row.

    Forced by the kit's hold (a statement trigger on job_queue, while set_pipe_job_priority runs):
    a count or a list of ids read by an earlier statement is then one job out of date. An UPDATE
    that says in its own WHERE that a job waits is re-checked by PostgreSQL on a row changed
    meanwhile, and leaves the taken job alone; so does a function that locked the jobs first.
    """
    mine, new = _race_pipe_job(conn, 1 + secrets.randbelow(3)), 1 + secrets.randbelow(START - 1)
    call = f"set_pipe_job_priority({mine}, {new})"
    with (
        lab.connect() as watch,
        holding(watch, "job_queue", when="BEFORE", event="UPDATE", level="STATEMENT",
                inside="set_pipe_job_priority") as hold,
        lab.connect() as caller,
        lab.connect() as worker,
    ):  # fmt: skip
        waiting = [job for (job,) in watch.execute(checks()["priority_waiting"], {"pipe_job_id": mine})]
        hold.arm(caller, 1)
        hold.close(1)
        changing, taken = Call(lambda: _set(caller, mine, new)), None
        # a take that waits for a lock the held call keeps gives up, instead of waiting for good
        worker.execute(queries.load("clients/races.sql")["lock_timeout"], {"ms": str(TAKE_WAIT_MS)})
        try:
            stop = hold.stops(caller, changing)
            if stop == "held":
                taken = worker.execute(checks()["priority_take_one"], {"pipe_job_id": mine}).fetchone()
        except Timeout as exc:
            return verdict.refuse(f"{call} neither answered nor reached its UPDATE of job_queue: {exc}")
        except psycopg.errors.LockNotAvailable:
            return verdict.refuse(
                f"while {call} was held at its first UPDATE of job_queue, a worker could not take one of its "
                f"waiting jobs in {TAKE_WAIT_MS // 1000} s: it waited for a lock your function held (a table "
                "lock, LOCK TABLE?), so every worker of the queue stops while a priority changes; lock only "
                "the rows you change (an UPDATE does)"
            )
        finally:
            hold.open_all()  # the call goes on, and the connections close, whatever went wrong
            result = changing.join()
    if stop != "held":
        return  # it answered, or waited, before any UPDATE of job_queue: the calls before judged it
    if isinstance(result, BaseException):
        return verdict.refuse(f"{call} failed once a worker had taken one of its jobs: {said(result)}")
    if taken is None:
        verdict.held.append(
            f"{call}, stopped at its UPDATE of job_queue: it had locked its {len(waiting)} waiting jobs "
            "already, so no worker could take one meanwhile"
        )
        return
    job, returned = taken[0], result
    if _priority(conn, job) == new:
        return verdict.expect(
            False,
            "",
            f"a worker took job {job} while {call} ran (after what the function read first, before its "
            f"UPDATE of job_queue changed a row), and the function then gave it priority {new}, though it "
            "was no longer waiting: the UPDATE trusts ids or a count read by an earlier statement; say in "
            "the UPDATE's own WHERE that a job still waits, and PostgreSQL re-checks that of a row changed "
            "meanwhile",
        )
    verdict.expect(
        returned == len(waiting) - 1,
        f"a worker took job {job} while {call} ran: the function left it alone, changed the "
        f"{len(waiting) - 1} still waiting and returned {len(waiting) - 1}",
        f"a worker took job {job} while {call} ran (after what the function read first, before its UPDATE "
        f"of job_queue changed a row): the function changed the other {len(waiting) - 1} and returned "
        f"{returned!r}: count what the UPDATE changed (GET DIAGNOSTICS ... = ROW_COUNT right after it, or a "
        "count of its RETURNING), not what an earlier statement saw",
    )


def _locked_by_a_claim(lab: labs.Scratch, conn: psycopg.Connection, verdict: Verdict) -> None:
    """A worker's claim holds one waiting job locked while it decides (an open transaction), the
    change runs, then the claim lets go without taking it: the job still waits, so the change must
    wait for the lock and then give it the new priority (NOWAIT fails, SKIP LOCKED passes it over)."""
    mine, new = _race_pipe_job(conn, 1 + secrets.randbelow(3)), 1 + secrets.randbelow(START - 1)
    waiting = [job for (job,) in conn.execute(checks()["priority_waiting"], {"pipe_job_id": mine})]
    locked = secrets.choice(waiting)
    call = f"set_pipe_job_priority({mine}, {new})"
    # the claim lets go without taking the job: its transaction rolls back
    stop, result = _beside_a_worker(
        lab,
        mine,
        new,
        lambda worker: worker.execute(checks()["priority_lock_one"], {"job_id": locked}),
        "rollback",
    )
    what = (
        f"while a worker's claim held job {locked} of pipe job {mine} locked (deciding whether to take it), "
        f"{call} ran; then the claim let go without taking it"
    )
    if isinstance(result, BaseException):
        return verdict.refuse(
            f"{what}: your function failed ({said(result)}): a claim ends in a moment, so wait for its lock "
            "(an UPDATE, or FOR UPDATE without NOWAIT, waits)"
        )
    now = _priority(conn, locked)
    if now != new:
        return verdict.refuse(
            f"{what}: job {locked} kept priority {now}, though it still waits: it must get priority {new} "
            "(SKIP LOCKED passes over a job whose claim may let go of it; wait for the lock instead)"
        )
    verdict.expect(
        result == len(waiting),
        f"{what}: your function waited for it ({stop}), gave it priority {new} and returned {len(waiting)}",
        f"{what}: job {locked} got priority {new}, but your function returned {result!r} for the "
        f"{len(waiting)} waiting jobs it changed",
    )


def _during_a_hand_over(lab: labs.Scratch, conn: psycopg.Connection, verdict: Verdict) -> None:
    """A worker's hand-over to the pipe job is open (its new job inserted, not committed: the insert's
    foreign key holds the pipe job's row FOR KEY SHARE, as create_jobs' does) while the change runs,
    then commits: the change must wait for it, never fail (NOWAIT on the pipe job fails), and the
    new job waits, so it gets the new priority too (an UPDATE of the priority alone waits for no
    hand-over, and its UPDATE of job_queue cannot see a job not committed yet)."""
    mine, new = _race_pipe_job(conn, 0), _raised()
    waiting = _place(conn, mine, taken_by=None)
    # those that wait before the hand-over (its entry job among them), and the one it makes
    expected = len(conn.execute(checks()["priority_waiting"], {"pipe_job_id": mine}).fetchall()) + 1
    call = f"set_pipe_job_priority({mine}, {new})"
    made: list[int] = []
    _, result = _beside_a_worker(
        lab, mine, new, lambda worker: made.append(_place(worker, mine, taken_by=None)), "commit"
    )
    what = f"while a worker's hand-over to pipe job {mine} was open (a new job inserted, not committed), "
    what += f"{call} ran"
    if isinstance(result, BaseException):
        return verdict.refuse(
            f"{what}: your function failed ({said(result)}): the insert holds the pipe job's row FOR KEY "
            "SHARE until its commit, a moment later, so wait for it (FOR UPDATE without NOWAIT waits; an "
            "UPDATE of pipe_job_priority alone does not even conflict with it)"
        )
    if _priority(conn, waiting) != new:
        return verdict.refuse(
            f"{what}: waiting job {waiting} has priority {_priority(conn, waiting)}, where {new} was asked"
        )
    (job,) = made
    verdict.expect(
        _priority(conn, job) == new and result == expected,
        f"{what}: your function waited for it, then gave the waiting jobs and the hand-over's new job "
        f"{job} priority {new}, and returned {expected}",
        f"{what}: the job that hand-over made ({job}) waits with priority {_priority(conn, job)}, where "
        f"{new} was asked: your function went on beside the hand-over, and its UPDATE of job_queue could "
        "not see a job not committed yet; lock the pipe job's row first (SELECT ... FOR UPDATE: a "
        "hand-over's insert holds it FOR KEY SHARE until its commit, which an UPDATE of the priority "
        "alone does not wait for), then change its jobs"
        if _priority(conn, job) != new
        else f"{what}: the waiting jobs got priority {new}, the hand-over's too, but your function returned "
        f"{result!r}, for {expected}",
    )


def _beside_a_worker(
    lab: labs.Scratch, mine: int, new: int, begin: Callable[[psycopg.Connection], object], end: str
) -> tuple[str | None, object]:
    """set_pipe_job_priority(mine, new) while a worker's transaction, which `begin` opened, stays open;
    once the change answered or waits for a lock, the worker ends it (`end`: commit or rollback).
    Where the change stopped (None: it answered at once), and what it returned or raised."""
    with lab.connect() as watch, lab.connect() as caller, lab.connect(autocommit=False) as worker:
        begin(worker)
        changing = Call(lambda: _set(caller, mine, new))
        try:
            stop = Hold(watch).stops(caller, changing)
        except Timeout as exc:
            stop = f"neither answered nor waited: {exc}"
        finally:
            getattr(worker, end)()
            result = changing.join()
    return stop, result


def _race_pipe_job(conn: psycopg.Connection, waiting: int) -> int:
    """A pipe job of a request of its own for a forced schedule, with `waiting` jobs waiting: its id."""
    params = {"request_id": 1000 + secrets.randbelow(9000), "pipe_id": 2}
    mine = conn.execute(checks()["priority_pipe_job"], params).fetchone()[0]
    for _ in range(waiting):
        _place(conn, mine, taken_by=None)
    return mine


def _set(conn: psycopg.Connection, pipe_job: int, priority: int) -> object:
    """What set_pipe_job_priority returned."""
    params = {"pipe_job_id": pipe_job, "priority": priority}
    return conn.execute(checks()["priority_set"], params).fetchone()[0]


def _priority(conn: psycopg.Connection, job_id: int) -> int:
    return conn.execute(checks()["priority_of_job"], {"job_id": job_id}).fetchone()[0]


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
