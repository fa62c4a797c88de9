"""Lesson 04's checker: the pick of the learner's `find_job`, tried call by call and with racing callers."""

from __future__ import annotations

import contextlib
import json
import secrets
from dataclasses import dataclass

import psycopg

from pgqueue.check.core import (
    Call,
    Hold,
    Refused,
    Verdict,
    advisory_locks,
    checker,
    checks,
    holding,
    said,
    together,
)
from pgqueue.queues import labs
from pgqueue.queues.single_call import LOST_RACE, NO_JOB
from pgqueue.wait import Timeout, until

OTHER_NAME, OTHER_VERSION = "second_process", "2.0.0"  # traps: another process, another version
RACE_TRIALS = 10  # trials of callers released together
RACERS = 4  # callers per trial, one connection each
RACE_JOBS = 6  # waiting jobs per trial: more than the callers, so every caller could get one


@dataclass(frozen=True)
class Job:
    """One job the checker placed, and what makes it a right or wrong pick."""

    job_id: int
    name: str
    version: str
    priority: int
    age: float  # seconds before the scene was made: larger is older
    finished: bool = False
    taken_by: str | None = None

    def waits_for(self, asker: Process) -> bool:
        """Whether a caller running `asker` may be handed this job."""
        return (self.name, self.version) == asker and not self.finished and not self.taken_by

    def __str__(self) -> str:
        return f"job {self.job_id} ({self.name} {self.version}, priority {self.priority})"


Process = tuple[str, str]  # (name, version)


def asker() -> Process:
    """The process every caller of one check runs: a name and version drawn for it, said in the verdict."""
    return f"picker_{secrets.token_hex(3)}", f"1.{secrets.randbelow(90) + 10}.{secrets.randbelow(10)}"


def scene(name: str, version: str) -> list[tuple]:
    """(name, version, priority, age, finished, taken_by) of each job: traps first, with the best priority."""
    return [
        (name, version, 1, 90.0, True, None),  # finished
        (name, version, 1, 80.0, False, "busy0worker"),  # taken by a worker already
        (name, OTHER_VERSION, 1, 70.0, False, None),  # another version of the process
        (OTHER_NAME, version, 1, 60.0, False, None),  # another process, same version
        (name, version, 100, 50.0, False, None),
        (name, version, 50, 30.0, False, None),
        (name, version, 50, 40.0, False, None),  # older than the one above: it goes first
        (name, version, 100, 20.0, False, None),
        (name, version, 200, 100.0, False, None),  # the oldest of all, but the worst priority
        (name, version, 150, 10.0, False, ""),  # '' is no worker, as NULL is: the original's own mark
    ]


@checker("your find_job", "single-call", "find_job", examples=True, replaces=["find_job"])
def find_job_pick(verdict: Verdict, lab: labs.Scratch, conn: psycopg.Connection, text: str, poc: str) -> None:
    """Whether the learner's `find_job` hands the right job, lowest priority then oldest, never twice."""
    me = asker()
    pipe_job = conn.execute(checks()["find_job_pipe_job"], {"request_id": 1}).fetchone()[0]
    jobs = [_place(conn, pipe_job, *row) for row in scene(*me)]
    if _one_by_one(conn, me, jobs, verdict):
        _second_while_first_holds(lab, me, pipe_job, verdict)
        _two_picks_at_once(lab, me, pipe_job, verdict)
        _race(lab, me, pipe_job, verdict)  # what many callers at once see, whatever the forced one said


def _place(conn, pipe_job, name, version, priority, age, finished, taken_by) -> Job:
    params = {
        "pipe_job_id": pipe_job,
        "name": name,
        "version": version,
        "priority": priority,
        "age": age,
        "finished": True if finished else None,  # NULL, not false, is what waits
        "taken_by": taken_by,
    }
    job_id = conn.execute(checks()["find_job_place"], params).fetchone()[0]
    return Job(job_id, name, version, priority, age, finished, taken_by)


def _one_by_one(conn: psycopg.Connection, me: Process, jobs: list[Job], verdict: Verdict) -> bool:
    """Callers one after the other: each must get the best job still waiting, then `No job found`."""
    by_id = {job.job_id: job for job in jobs}
    waiting = sorted((j for j in jobs if j.waits_for(me)), key=lambda j: (j.priority, -j.age))
    handed: list[int] = []
    for call in range(1, len(waiting) + 2):
        uuid = secrets.token_hex(6)
        try:
            answer = _ask(conn, me, uuid)
        except psycopg.Error as exc:
            return verdict.expect(False, "", f"call {call} failed: {said(exc)}")
        if not waiting:
            verdict.held.append(
                f"{len(handed)} calls one by one for {me[0]} {me[1]} got jobs {handed}: lowest "
                "job_priority first, then the oldest, each marked as its caller's"
            )
            verdict.held.append(
                "no call got a finished job, a taken job, or a job of another process or version"
            )
            return verdict.expect(
                answer == NO_JOB,
                f"once the {len(handed)} waiting jobs are handed out, the next call answers {NO_JOB!r}",
                f"call {call}, with no job of {me[0]} {me[1]} left waiting, answered {_short(answer)}: "
                f"expected {NO_JOB!r}",
            )
        if answer == NO_JOB and _found_once_false(conn, me, waiting):
            raise Refused(
                f"call {call} answered {NO_JOB!r} while {waiting[0]} waited: a waiting job's job_finished "
                "is NULL (it has not finished), and your pick found none of them; with their "
                "job_finished set to false it found one, so it looks for job_finished = false, which "
                "no job has: test job_finished IS NULL"
            )
        got = _job_of(answer, verdict, f"call {call}", waiting[0])
        if got is None:
            return False
        job = by_id.get(got)
        if job is None:
            raise Refused(f"call {call} got job {got}, which the checker never made")
        if not _fits(job, me, verdict, f"call {call}"):
            return False
        best = waiting[0]
        if job.job_id != best.job_id:
            raise Refused(f"call {call} got {job}, but {best} waited: {_why(job, best)}")
        taker = conn.execute(checks()["find_job_taker"], {"job_id": got}).fetchone()[0]
        if taker != uuid:
            raise Refused(f"call {call} got job {got}, but the table says {taker!r} has it")
        waiting.pop(0)
        handed.append(got)
    return True  # not reached: the loop ends on the call after the last waiting job


def _found_once_false(conn: psycopg.Connection, me: Process, waiting: list[Job]) -> bool:
    """Whether a pick that found no waiting job finds one once their job_finished is false (rolled back)."""
    try:
        with conn.transaction(force_rollback=True):
            conn.execute(checks()["find_job_finished_false"], {"job_ids": [j.job_id for j in waiting]})
            answer = _ask(conn, me)
    except psycopg.Error:
        return False
    return _jobs_in(answer) is not None and len(_jobs_in(answer)) == 1


def _fits(job: Job, me: Process, verdict: Verdict, who: str) -> bool:
    """Refuse a job no caller of this process may get, naming why."""
    if (job.name, job.version) != me:
        verdict.refuse(
            f"{who} got {job}: a worker of {me[0]} {me[1]} must get only jobs of its own name and version "
            "(p_name and p_version)"
        )
    elif job.finished:
        verdict.refuse(f"{who} got {job}, which was finished: a finished job has job_finished = true")
    elif job.taken_by:
        verdict.refuse(
            f"{who} got {job}, which worker {job.taken_by} had taken already "
            "(its job_assigned_process_uuid was set)"
        )
    else:
        return True
    return False


# the original marks a job "no worker" with NULL or with '' alike
_EMPTY_UUID = "; its job_assigned_process_uuid is '' (empty), which means no worker, as NULL does"


def _why(got: Job, best: Job) -> str:
    if best.taken_by == "":
        return _EMPTY_UUID.removeprefix("; ")
    if got.priority > best.priority:
        return f"the lowest job_priority goes first ({best.priority} before {got.priority})"
    return "among equal priorities the oldest job (job_create_timestamp) goes first"


def _second_while_first_holds(lab: labs.Scratch, me: Process, pipe_job: int, verdict: Verdict) -> bool:
    """One schedule forced: caller A's transaction holds its job while caller B asks.

    With FOR UPDATE, B waits for A's row lock, and once A commits PostgreSQL re-checks the row,
    finds it taken and hands B the next one; with SKIP LOCKED, B takes the next one at once.
    Without a lock, B reads the job A is taking, and its claim loses. Decided every time, not by luck.
    """
    asks = (me[0], "forced")
    with lab.connect() as conn:
        for n in range(2):
            _place_race_job(conn, pipe_job, asks, n)
    with lab.connect() as a, lab.connect() as b, lab.connect() as watch:
        with a.transaction():
            first = _ask(a, asks)
            a_locks = advisory_locks(watch, a)  # advisory locks A holds while its transaction is open
            second = Call(lambda: _ask(b, asks))
            seen = None  # B neither answered nor waited for a lock in 10 s: said below
            with contextlib.suppress(Timeout):
                lock = Hold(watch).stops(b, second)  # the kind of lock B waits for, or None: it answered
                seen = {"transactionid": "waits", "tuple": "waits", None: "answered"}.get(
                    lock, f"waits {lock}"
                )
        answer = second.join(10)
    held = _job_of(first, verdict, "caller A, alone with two waiting jobs")
    if held is None:
        return False
    what = f"while caller A held job {held} in an open transaction"
    if not second.done:
        return verdict.expect(False, "", f"{what}, caller B never answered, not even after A committed")
    if isinstance(answer, BaseException):
        words = said(answer)
        return verdict.expect(
            False,
            "",
            f"{what}, caller B failed: {words}" + (_NOWAIT if "could not obtain lock" in words else ""),
        )
    if answer == LOST_RACE:
        # where B waited, if it did (in its own pick, or in the claim after it), pg_locks cannot tell
        if seen == "waits advisory":
            cause = (
                "B waited at an advisory lock, yet read the job before A's claim was committed: the lock was "
                "let go before the commit (pg_advisory_unlock, or a session-level lock let go in the "
                "function); pg_advisory_xact_lock is let go at the commit, and FOR UPDATE on the pick needs "
                "none"
            )
        elif a_locks:
            cause = (
                "A held an advisory lock, but B did not wait for it: the two took locks of different keys (a "
                "key of the caller, not of the queue it picks from?), so the lock kept nobody out"
            )
        else:
            cause = (
                "B's pick read the job A was taking before any lock of it, and its claim lost; the SELECT "
                "that picks must lock the row itself (FOR UPDATE), so that B waits for A before it reads the "
                "row, not after (a lock in a statement of its own comes too late, and one let go before the "
                "commit keeps nobody out)"
            )
        return verdict.expect(
            False,
            "",
            f"{what}, caller B was told {LOST_RACE!r} although another job waited: {cause}",
        )
    got = _job_of(answer, verdict, f"caller B, {what}")
    if got is None:
        return False
    how = {
        "waits": f"caller B waited for A's row lock, then took the next job ({got})",
        "answered": f"caller B did not wait: it passed over the locked row and took the next job ({got})",
        None: f"caller B answered only after A committed, though it waited for no lock: it took job {got}",
    }.get(seen, f"caller B waited for A's {seen.removeprefix('waits ')} lock, then took the next job ({got})")
    return verdict.expect(
        got != held,
        f"{what}, {how}",
        f"{what}, caller B got job {held} too: one job must go to one worker only",
    )


def _two_picks_at_once(lab: labs.Scratch, me: Process, pipe_job: int, verdict: Verdict) -> None:
    """A second schedule forced: two callers each stopped right after their pick, before their claim.

    A kit hold (core.holding, on job_queue_claim) stops every caller at its claim while the judge
    holds its slot. With FOR UPDATE the second caller never gets there: it waits at its pick for
    the first one's row lock. A lock two callers can hold at once (FOR SHARE) lets both pick the
    same job and meet only at the claim, where one of them fails. Decided every time, not by luck.
    """
    asks = (me[0], "paused")
    with lab.connect() as conn:
        for n in range(2):
            _place_race_job(conn, pipe_job, asks, n)
    with (
        lab.connect() as watch,
        holding(watch, "job_queue_claim", when="BEFORE", event="INSERT") as hold,
        lab.connect() as a,
        lab.connect() as b,
    ):
        for caller in (a, b):
            hold.arm(caller, 1)
        hold.close(1)
        calls = [Call(lambda caller=caller: _ask(caller, asks)) for caller in (a, b)]

        def stops() -> list[str | None] | None:
            seen = [hold.where(caller.info.backend_pid) for caller in (a, b)]
            return seen if all(seen) or any(call.done for call in calls) else None

        seen: list[str | None] = []
        with contextlib.suppress(Timeout):
            seen = until(stops, 10, "both callers stopped at their pick or their claim")
        hold.open(1)
        heard = [call.join(10) for call in calls]
    if seen.count("held") == 0:
        return  # neither reached a claim while held: the answer claims otherwise, judged elsewhere
    what = "two callers at once, each stopped right after its pick (before its claim)"
    errors = [said(h) for h in heard if isinstance(h, BaseException)]
    jobs = [_jobs_in(h) for h in heard if not isinstance(h, BaseException)]
    both_picked = seen.count("held") == 2
    same = both_picked and (errors or LOST_RACE in heard or len({tuple(j or ()) for j in jobs}) < 2)
    if same:
        told = errors[0] if errors else f"one was told {LOST_RACE!r}" if LOST_RACE in heard else "both got it"
        verdict.expect(
            False,
            "",
            f"{what}: both had picked the same job before either claimed it ({told})"
            + (_DEADLOCK if any("deadlock" in e for e in errors) else _OWN_ROW),
        )
        return
    # each got a job, and not the same one ('No job found' is no job of its own)
    distinct = not errors and LOST_RACE not in heard and all(jobs) and len({tuple(j) for j in jobs}) == 2
    if not distinct:
        told = errors[0] if errors else "one got no job, though another waited"
        told = f"one was told {LOST_RACE!r}" if LOST_RACE in heard else told
        verdict.expect(
            False,
            "",
            f"{what}: the two did not each take a job of their own ({told})"
            + (_NOWAIT if any("could not obtain lock" in e for e in errors) else ""),
        )
        return
    if both_picked:
        how = "the second passed over the first one's row and both took a job of their own"
    elif {"transactionid", "tuple"} & set(seen):  # pg_locks: waiting for the row the first one locked
        how = "the second waited at its pick for the first one's row lock, then took the next job"
    else:
        how = "the second never reached its claim while the first was held, and both took a job of their own"
    verdict.expect(True, f"{what}: {how}", "")


def _race(lab: labs.Scratch, me: Process, pipe_job: int, verdict: Verdict) -> None:
    """RACERS callers released together, RACE_TRIALS times, each trial on fresh waiting jobs."""
    doubled: list[str] = []
    failed: list[str] = []
    lost = served = 0
    conns = [lab.connect() for _ in range(RACERS)]
    try:
        for trial in range(RACE_TRIALS):
            asks = (me[0], f"race-{trial}")
            for n in range(RACE_JOBS):
                _place_race_job(conns[0], pipe_job, asks, n)
            results = together(RACERS, lambda i, asks=asks: _ask(conns[i], asks))
            got: dict[int, int] = {}
            for result in results:
                jobs = _jobs_in(result)
                if isinstance(result, BaseException):
                    failed.append(said(result))
                elif result == LOST_RACE:
                    lost += 1
                elif jobs is None or len(jobs) != 1:
                    failed.append(f"answered {_short(result)} while {RACE_JOBS} jobs waited")
                else:
                    got[jobs[0]] = got.get(jobs[0], 0) + 1
                    served += 1
            doubled += [f"{n} workers got job {job_id}" for job_id, n in got.items() if n > 1]
    finally:
        for conn in conns:
            conn.close()
    what = f"{RACERS} callers at once, {RACE_JOBS} jobs waiting, {RACE_TRIALS} times"
    more = f" (and {len(doubled) - 1} more like it)" if len(doubled) > 1 else ""
    verdict.expect(
        not doubled,
        f"{what}: no job was handed to two callers",
        f"{what}: {doubled[0] if doubled else ''}{more}: one job must go to one worker only",
    )
    calls = RACERS * RACE_TRIALS
    verdict.expect(
        not failed,
        f"{what}: no call failed",
        f"{what}: {len(failed)} of {calls} calls failed ({failed[0] if failed else ''})"
        + (_DEADLOCK if any("deadlock" in f for f in failed) else "")
        + (_NOWAIT if any("could not obtain lock" in f for f in failed) else ""),
    )
    if lost:
        verdict.refuse(
            f"{what}: {lost} of {calls} callers were told {LOST_RACE!r} although jobs were still waiting: "
            "without FOR UPDATE, racing callers read the same job, and all of them but one lose its claim"
        )
    elif served == calls and not doubled:
        verdict.held.append(
            f"{what}: every caller got a job of its own ({served} of {calls}), none was told to retry"
        )


# what makes two callers of a pick deadlock: a lock that two of them can hold on one row at once
_DEADLOCK = (
    ": a shared lock (FOR SHARE, FOR KEY SHARE) lets two callers lock the same row, then each waits for "
    "the other to let go before it can take the job; FOR UPDATE lets one caller at a time hold it"
)

# what a pick that does not keep its row to itself leads to
_OWN_ROW = ": a pick must lock its row for itself (FOR UPDATE), so that a second caller cannot pick it too"

# what NOWAIT does to a caller that meets a locked row
_NOWAIT = (
    ": NOWAIT makes a caller fail on a row another caller has locked; it must wait for it (FOR UPDATE) "
    "or pass over it (SKIP LOCKED)"
)


def _jobs_in(answer: object) -> list[int] | None:
    """The job ids of a JSON array answer, or None if it is not one."""
    if not isinstance(answer, str) or not answer.startswith("["):
        return None
    try:
        return [job["job_id"] for job in json.loads(answer)]
    except (ValueError, TypeError, KeyError):
        return None


def _place_race_job(conn: psycopg.Connection, pipe_job: int, asks: Process, n: int) -> None:
    _place(conn, pipe_job, *asks, 100, float(RACE_JOBS - n), False, None)


def _ask(conn: psycopg.Connection, asks: Process, uuid: str | None = None) -> str:
    params = {"uuid": uuid or secrets.token_hex(6), "name": asks[0], "version": asks[1]}
    return conn.execute(checks()["find_job_call"], params).fetchone()[0]


def _job_of(answer: str, verdict: Verdict, who: str, best: Job | None = None) -> int | None:
    """The one job id of an answer, or None after saying what the answer was instead."""
    jobs = _jobs_in(answer)
    if jobs is None or len(jobs) != 1:
        waited = f"{best} waited" if best is not None else "jobs waited"
        verdict.refuse(
            f"{who} answered {_short(answer)} while {waited}: expected a JSON array of one job"
            + (_EMPTY_UUID if best is not None and best.taken_by == "" else "")
        )
        return None
    return jobs[0]


def _short(answer: object) -> str:
    shown = repr(answer)
    return shown if len(shown) < 80 else shown[:77] + "...'"
