"""Lesson 12's checker: the learner's hardened `claim_jobs`, called through find_job as workers call it."""

from __future__ import annotations

import json
import secrets
import threading
from dataclasses import dataclass

import psycopg

from pgqueue import labs, queries, races
from pgqueue.check.core import Verdict, install, together, written
from pgqueue.wait import until

NAME, VERSION = "checked_process", "1.0.0"  # the process whose workers call find_job
NO_JOB = "No job found"
RACERS = 4  # callers released together while one transaction holds a job
LOCK_WAIT_MS = 2000  # a caller that waits for a lock longer than this gives up
CROWD = 20_000  # waiting jobs of other processes in the cost check
COST_CALLS = 3  # claims measured in the cost check
READ_LIMIT = CROWD // 100  # rows of job_queue those claims may read: far fewer than the queue holds
ROUTINE = "claim_jobs"


def _q() -> queries.Queries:
    return queries.load("clients/check_claim.sql")


@dataclass(frozen=True)
class Job:
    """One job the checker placed; `never` says why no caller may get it (None: it waits)."""

    job_id: int
    priority: int
    age: int  # seconds before the scene was made: larger is older
    never: str | None = None

    def __str__(self) -> str:
        return f"job {self.job_id} (priority {self.priority}, {self.age} s old)"


# Waiting jobs, placed in this order, which is not the order they are served in: the best
# (lowest priority, then oldest) is placed fourth, the worst first. Served: 50/40, 50/30,
# 100/50, then 100/20, 150/10, 200/100.
WAITING = [(200, 100), (100, 20), (50, 30), (50, 40), (100, 50), (150, 10)]
BATCHES = [3, 1, 100, 1]  # batch_size of each call: 3 best, the next, all the rest, then none


def claim_jobs(text: object) -> Verdict:
    """Whether the learner's `claim_jobs` hands the best jobs, never a wrong one, at once, at a flat cost."""
    verdict = Verdict("your claim_jobs")
    if written(text, verdict) is None:
        return verdict
    with labs.scratch("hardened", examples=True) as lab, lab.connect() as conn:
        if not install(conn, text, verdict, replaces=[ROUTINE]):
            return verdict
        conn.execute(_q()["settings"])
        if not _order_and_batch(lab, conn, verdict):
            return verdict
        if not _while_one_is_held(lab, conn, verdict):
            return verdict
        _cost(lab, conn, verdict)
    return verdict


# --- 1 and 2: which jobs, in which order, how many -------------------------------------------


def _order_and_batch(lab: labs.Scratch, conn: psycopg.Connection, verdict: Verdict) -> bool:
    """Callers one after the other on a scene of waiting jobs and traps: the best jobs, batch by batch."""
    holder = secrets.token_hex(6)
    conn.execute(_q()["beat"], {"uuid": holder, "name": NAME, "version": VERSION})
    scene = _pipe_job(conn)
    # the traps are the best and oldest of all: a claim that lets one through hands it out first
    traps = [
        _place(conn, scene, 1, 600, taken_by=holder, attempts=1,
               never=f"is leased to worker {holder}, which is alive (its job_assigned_process_uuid is set)"),
        _place(conn, scene, 1, 590, finished=True, attempts=1, never="is finished (job_finished is true)"),
        # a pipe job of its own: a job made later in a pipe job with a dead job is born dead
        _place(conn, _pipe_job(conn), 1, 580, dead=True, attempts=5, error="failed five times",
               never="was dead-lettered after five failed attempts (job_dead_timestamp is set)"),
        _place(conn, scene, 1, 570, due_in=3600, attempts=1, error="failed once",
               never="failed once and is not due for an hour: its job_run_after, the end of its backoff, "
               "is in the future"),
        _place(conn, scene, 1, 560, version="2.0.0", never=f"is a job of {NAME} 2.0.0, another version"),
        _place(conn, scene, 1, 550, name="other_process", never=f"is a job of other_process {VERSION}"),
    ]  # fmt: skip
    waiting = [_place(conn, scene, p, a) for p, a in WAITING]
    by_id = {job.job_id: job for job in traps + waiting}
    left = sorted(waiting, key=_rank)
    served: list[str] = []
    with lab.connect() as asker:
        # the scene is stored in another order than it is served: read in the table's order, the
        # jobs come out right only through an ORDER BY, whatever plan the queue is big enough for
        asker.execute(_q()["index_scans_off"])
        for call, batch in enumerate(BATCHES, 1):
            who = f"call {call} (batch_size {batch})"
            got = _jobs(asker, VERSION, batch, verdict, who)
            if got is None:
                return False
            for job in got:
                wrong = _never(job, by_id)
                if wrong:
                    return verdict.expect(False, "", f"{who} got job {job['job_id']}, which {wrong}")
            ids = {job["job_id"] for job in got}
            best = left[:batch]
            if len(ids) > batch:
                return verdict.expect(
                    False, "", f"{who} got {len(ids)} jobs: batch_size is the most one call may take"
                )
            if len(ids) < len(best):
                return verdict.expect(
                    False,
                    "",
                    f"{who} got {_count(len(ids))} ({_ids(ids)}) while {len(left)} jobs of {NAME} {VERSION} "
                    "waited: a call takes up to batch_size jobs at once (LIMIT batch_size)",
                )
            if ids != {job.job_id for job in best}:
                worse = max((by_id[i] for i in ids - {j.job_id for j in best}), key=_rank)
                better = min((j for j in best if j.job_id not in ids), key=_rank)
                return verdict.expect(
                    False, "", f"{who} got {worse}, but {better} waited: {_why(worse, better)}"
                )
            if best:
                served.append(f"batch_size {batch} got {_ids(ids)}")
            left = left[batch:]
    verdict.held.append(
        "called one after the other, find_job handed the best waiting jobs first, lowest job_priority then "
        f"oldest, though they were stored in another order ({'; '.join(served)}); then {NO_JOB!r}"
    )
    verdict.held.append(
        "no call got a job leased to a live worker, a finished job, a dead-lettered job, a job still backing "
        "off after a failed attempt, or a job of another process or version"
    )
    return True


def _rank(job: Job) -> tuple[int, int]:
    """The order jobs are served in: lowest priority first, then the oldest."""
    return job.priority, -job.age


def _never(job: dict, by_id: dict[int, Job]) -> str | None:
    """Why no caller of NAME VERSION may get `job` (as find_job answered it), or None if one may."""
    process = (job["job_process_name"], job["job_process_version"])
    if process != (NAME, VERSION):
        return f"is a job of {' '.join(process)}: a worker of {NAME} {VERSION} may get only its own jobs"
    placed = by_id.get(job["job_id"])
    if placed is None:
        return "the checker never placed"
    return placed.never


def _why(wrong: Job, better: Job) -> str:
    if better.priority < wrong.priority:
        return f"the lowest job_priority goes first ({better.priority} before {wrong.priority})"
    return "among equal priorities the oldest job (job_create_timestamp) goes first"


def _count(n: int) -> str:
    return f"{n} job" if n == 1 else f"{n} jobs"


def _ids(ids) -> str:
    if not ids:
        return "none"
    return ("job " if len(ids) == 1 else "jobs ") + ", ".join(str(i) for i in sorted(ids))


# --- 3: a job held open, callers released together ------------------------------------------


def _while_one_is_held(lab: labs.Scratch, conn: psycopg.Connection, verdict: Verdict) -> bool:
    """One schedule forced: a transaction holds the job it claimed while RACERS callers ask at once."""
    version = "race"
    scene = _pipe_job(conn)
    for n in range(RACERS + 1):
        _place(conn, scene, 100, RACERS + 1 - n, version=version)
    callers = [lab.connect() for _ in range(RACERS)]
    try:
        for c in callers:
            c.execute(_q()["lock_timeout"], {"ms": str(LOCK_WAIT_MS)})
        with lab.connect() as holder, holder.transaction():
            first = _jobs(holder, version, 1, verdict, "the holder, alone with five waiting jobs")
            if first is None:
                return False
            if len(first) != 1:
                return verdict.expect(False, "", f"the holder, asking for one job of five, got {len(first)}")
            held = first[0]["job_id"]
            results = together(RACERS, lambda i: _ask(callers[i], version, 1))
    finally:
        for c in callers:
            c.close()
    waited = sum(isinstance(r, psycopg.errors.LockNotAvailable) for r in results)
    failed = [
        r
        for r in results
        if isinstance(r, BaseException) and not isinstance(r, psycopg.errors.LockNotAvailable)
    ]
    if failed:
        return verdict.expect(
            False, "", f"while a transaction held job {held}, a caller failed: {_said(failed[0])}"
        )
    what = f"while a transaction held job {held} open, {RACERS} callers released together"
    if not verdict.expect(
        waited == 0,
        f"{what} answered at once: none waited for the held job's lock",
        f"{what}: {waited} of them waited for the held job's lock until lock_timeout "
        f"({LOCK_WAIT_MS // 1000} s) stopped them; SKIP LOCKED passes over a job another caller is "
        "claiming and takes the next",
    ):
        _let_through(lab, conn, verdict)
        return False
    answers = [r for r in results if isinstance(r, str)]
    got: dict[int, int] = {}
    for answer in answers:
        for job in _parse(answer) or []:
            got[job["job_id"]] = got.get(job["job_id"], 0) + 1
    twice = sorted(i for i, n in got.items() if n > 1)
    ok = verdict.expect(
        held not in got,
        f"{what}: none got job {held}",
        f"{what}: one of them got job {held} too: one job must go to one worker only",
    )
    ok &= verdict.expect(
        not twice,
        f"{what}: no job went to two of them",
        f"{what}: job {twice[0] if twice else ''} went to two of them",
    )
    served = sum(1 for a in answers if len(_parse(a) or []) == 1)
    ok &= verdict.expect(
        served == RACERS,
        f"{what}: each got a job of its own ({_ids(got)})",
        f"{what}: only {served} got a job, though {RACERS} jobs besides the held one waited "
        f"(they answered {sorted(set(a for a in answers if not a.startswith('[')))})",
    )
    return ok


def _let_through(lab: labs.Scratch, conn: psycopg.Connection, verdict: Verdict) -> None:
    """One schedule forced, to say what a waiting caller does once the holder commits.

    The holder claims a job and stays open; a caller asks and waits for the lock; then the holder
    commits. With FOR UPDATE, the caller re-checks the row, finds it taken and takes the next
    job. Without it, the caller read the job as waiting, and it leases the job a second time.
    """
    version = "let-through"
    scene = _pipe_job(conn)
    for n in range(2):
        _place(conn, scene, 100, 2 - n, version=version)
    heard: list[str | BaseException] = []
    with lab.connect() as a, lab.connect() as b, lab.connect() as watch:
        b.execute(_q()["lock_timeout"], {"ms": "10000"})

        def second() -> None:
            try:
                heard.append(_ask(b, version, 1))
            except psycopg.Error as exc:
                heard.append(exc)

        racer = threading.Thread(target=second, daemon=True)
        with a.transaction():
            first = _ask(a, version, 1)
            racer.start()
            until(
                lambda: heard or races.waiting_on_lock(b.info.backend_pid, conn=watch),
                10,
                "the caller answering or waiting",
            )
            waited = not heard
        racer.join(15)
    held = (_parse(first) or [{}])[0].get("job_id")
    what = f"while a transaction held job {held}, a caller asked" + (
        "; it waited for the lock, and once that transaction committed, it" if waited else " and"
    )
    answer = heard[0] if heard else TimeoutError("no answer")
    if isinstance(answer, psycopg.errors.UniqueViolation):
        verdict.wrong.append(
            f"{what} leased job {held} a second time, and job_attempts refused a second running attempt "
            f"({_said(answer)}): without FOR UPDATE the SELECT reads a job another caller is leasing as "
            "still waiting, so two callers pick the same job"
        )
    elif isinstance(answer, BaseException):
        verdict.wrong.append(f"{what} failed: {_said(answer)}")
    else:
        jobs = [job["job_id"] for job in _parse(answer) or []]
        verdict.expect(
            held not in jobs,
            f"{what} took the next job ({_ids(jobs)}): FOR UPDATE re-checked the row it waited for, "
            "so the claim is right, only slow",
            f"{what} got job {held} too: one job must go to one worker only",
        )


# --- 4: the cost of a claim in a long queue --------------------------------------------------


def _cost(lab: labs.Scratch, conn: psycopg.Connection, verdict: Verdict) -> bool:
    """COST_CALLS claims in one transaction (rolled back) beside CROWD waiting jobs of other processes.

    Measured by what PostgreSQL counts for the transaction in pg_stat_xact_user_tables: scans of the
    whole table, and rows fetched from it. Both are counts, the same on every machine and every run.
    """
    version = "cost"
    scene = _pipe_job(conn)
    conn.execute(_q()["crowd"], {"pipe_job_id": scene, "jobs": CROWD})
    for n in range(COST_CALLS + 2):
        _place(conn, scene, 100, COST_CALLS + 2 - n, version=version)
    conn.execute(_q()["analyze"])
    with lab.connect() as asker, asker.transaction(force_rollback=True):
        scans0, rows0 = asker.execute(_q()["reads"]).fetchone()
        for call in range(1, COST_CALLS + 1):
            got = _jobs(asker, version, 1, verdict, f"call {call} beside {CROWD:,} jobs of other processes")
            if got is None:
                return False
            if len(got) != 1:
                return verdict.expect(
                    False,
                    "",
                    f"call {call} beside {CROWD:,} jobs of other processes got "
                    f"{len(got)} jobs while {COST_CALLS + 2} of {NAME} {version} waited",
                )
        scans1, rows1 = asker.execute(_q()["reads"]).fetchone()
    scans, rows = scans1 - scans0, rows1 - rows0
    what = f"with {CROWD:,} jobs of other processes waiting, {COST_CALLS} claims"
    return verdict.expect(
        scans == 0 and rows <= READ_LIMIT,
        f"{what} read {rows} rows of job_queue and scanned the whole table 0 times: the partial index "
        "job_queue_waiting led them straight to the best jobs, so a claim costs the same however long "
        "the queue",
        f"{what} scanned the whole of job_queue {scans} times and read {rows:,} of its rows to hand out "
        f"{COST_CALLS} jobs: a claim must not grow with the queue. The planner uses the partial index "
        "job_queue_waiting only when your WHERE says what the index's does "
        "(job_assigned_process_uuid IS NULL AND job_finished IS NULL AND job_dead_timestamp IS NULL); "
        "coalesce(job_assigned_process_uuid, '') = '' says the same to a reader, not to the planner",
    )


# --- the calls ------------------------------------------------------------------------------


def _pipe_job(conn: psycopg.Connection) -> int:
    return conn.execute(_q()["pipe_job"]).fetchone()[0]


def _place(
    conn: psycopg.Connection,
    pipe_job: int,
    priority: int,
    age: int,
    *,
    name: str = NAME,
    version: str = VERSION,
    taken_by: str | None = None,
    finished: bool = False,
    dead: bool = False,
    due_in: float = 0.0,
    attempts: int = 0,
    error: str | None = None,
    never: str | None = None,
) -> Job:
    params = {
        "pipe_job_id": pipe_job,
        "name": name,
        "version": version,
        "priority": priority,
        "age": float(age),
        "taken_by": taken_by,
        "finished": finished,
        "dead": dead,
        "due_in": float(due_in),
        "attempts": attempts,
        "error": error,
    }
    return Job(conn.execute(_q()["place"], params).fetchone()[0], priority, age, never)


def _ask(conn: psycopg.Connection, version: str, batch: int) -> str:
    params = {"uuid": secrets.token_hex(6), "name": NAME, "version": version, "batch": batch}
    return conn.execute(_q()["find_job"], params).fetchone()[0]


def _jobs(
    conn: psycopg.Connection, version: str, batch: int, verdict: Verdict, who: str
) -> list[dict] | None:
    """The jobs one find_job call was handed ([] for `No job found`), or None after saying what went wrong."""
    try:
        answer = _ask(conn, version, batch)
    except psycopg.Error as exc:
        verdict.refuse(f"{who} failed: {_said(exc)}")
        return None
    jobs = _parse(answer)
    if jobs is None:
        verdict.refuse(f"{who} answered {answer!r}: expected a JSON array of jobs or {NO_JOB!r}")
    return jobs


def _parse(answer: str) -> list[dict] | None:
    if answer == NO_JOB:
        return []
    try:
        jobs = json.loads(answer)
    except (TypeError, ValueError):
        return None
    if not isinstance(jobs, list) or not all(isinstance(j, dict) and "job_id" in j for j in jobs):
        return None
    return jobs


def _said(exc: BaseException) -> str:
    if isinstance(exc, psycopg.Error) and exc.diag.message_primary:
        return exc.diag.message_primary
    return str(exc)
