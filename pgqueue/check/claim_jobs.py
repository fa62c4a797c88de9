"""Lesson 12's checker: the learner's hardened `claim_jobs`, called through find_job as workers call it."""

from __future__ import annotations

import random
import secrets
from collections import Counter

import psycopg

from pgqueue import queries
from pgqueue.check.callers import client, waits, wrong
from pgqueue.check.claim_calls import (
    HELD_WAIT_MS,
    LEASED_TWICE,
    NAME,
    VERSION,
    Job,
    ask,
    caller_connections,
    handed,
    job_list,
    new_pipe_job,
    parse,
    place,
    race_failure,
    timed,
    waiting_jobs,
    waiting_order,
)
from pgqueue.check.claim_held import held_inside
from pgqueue.check.core import Call, Verdict, advisory_locks, checker, said, together
from pgqueue.queues import labs
from pgqueue.queues.client import NO_JOB
from pgqueue.queues.heartbeats import Identity, send_heartbeat

RACERS = (3, 5)  # how many callers are released together while one transaction holds a job
LOCK_WAIT_MS = 2000  # a caller that waits for a lock longer than this gives up
TRIALS = 3  # free races of many callers, each over jobs of its own
CROWD_RACERS = 8  # callers in each free race, each asking until it hears NO_JOB
# jobs of the racing process still backing off, ahead of the waiting ones in the index: every
# claim walks past them (about 3 ms) after taking its snapshot, so a caller whose snapshot is
# older than another's lease often reaches the job that other caller leased only after it committed
BACKING_OFF = 20_000
CROWD = 20_000  # waiting jobs of other processes in the cost check
COST_CALLS = 3  # claims measured in the cost check
READ_LIMIT = CROWD // 100  # rows of job_queue those claims may read: far fewer than the queue holds
ROUTINE = "claim_jobs"


def _q() -> queries.Queries:
    return queries.load("clients/check_claim_jobs.sql")


@checker("your claim_jobs", "hardened", examples=True, replaces=[ROUTINE])
def claim_jobs(verdict: Verdict, lab: labs.Scratch, conn: psycopg.Connection, text: str, poc: str) -> None:
    """Whether the learner's `claim_jobs` hands the best jobs, never a wrong one, each to one caller, at once.

    The scene changes on every call (priorities, ages, batch sizes, job counts), so no constant
    of it can pass: the values are said in the verdict.
    """
    conn.execute(_q()["settings"])
    rng = random.Random(secrets.randbits(64))
    # the cost before the races: the rescue inside every find_job reads the leases they leave
    checks = (_order_and_batch, _while_one_is_held, held_inside, _cost, _given_back, _races)
    all(check(lab, conn, verdict, rng) for check in checks)


# --- 1 and 2: which jobs, in which order, how many -------------------------------------------


def _order_and_batch(
    lab: labs.Scratch, conn: psycopg.Connection, verdict: Verdict, rng: random.Random
) -> bool:
    """Callers one after the other on a scene of waiting jobs and traps: the best jobs, batch by batch."""
    holder = Identity.new(NAME, VERSION)
    send_heartbeat(conn, holder)  # alive: the holder of a job placed as leased
    scene = new_pipe_job(conn)
    # the traps are the best and oldest of all: a claim that lets one through hands it out first
    traps = [
        place(conn, scene, 1, 600, taken_by=holder.uuid, attempts=1,
               never=f"is leased to worker {holder.uuid}, which is alive "
               "(its job_assigned_process_uuid is set)"),
        place(conn, scene, 1, 590, finished=True, attempts=1, never="is finished (job_finished is true)"),
        # a pipe job of its own: a job made later in a pipe job with a dead job is born dead
        place(conn, new_pipe_job(conn), 1, 580, dead=True, attempts=5, error="failed five times",
               never="was dead-lettered after five failed attempts (job_dead_timestamp is set)"),
        place(conn, scene, 1, 570, due_in=3600.0, attempts=1, error="failed once",
               never="failed once and is not due for an hour: its job_run_after, the end of its backoff, "
               "is in the future"),
        place(conn, scene, 1, 560, version="2.0.0", never=f"is a job of {NAME} 2.0.0, another version"),
        place(conn, scene, 1, 550, name="other_process", never=f"is a job of other_process {VERSION}"),
    ]  # fmt: skip
    order, batches = waiting_order(rng)
    waiting = [place(conn, scene, p, a) for p, a in order]
    by_id = {job.job_id: job for job in traps + waiting}
    left = sorted(waiting, key=_rank)
    served: list[str] = []
    with lab.connect() as asker:
        # the scene is stored in another order than it is served: read in the table's order, the
        # jobs come out right only through an ORDER BY, whatever plan the queue is big enough for
        asker.execute(_q()["index_scans_off"])
        for call, batch in enumerate(batches, 1):
            who = f"call {call} (batch_size {batch})"
            caller = secrets.token_hex(6)
            got = handed(asker, VERSION, batch, verdict, who, caller)
            if got is None:
                return False
            fault = _batch_fault(conn, got, by_id, left, batch, caller)
            if fault:
                return wrong(verdict, f"{who} got {fault}")
            if left[:batch]:
                served.append(f"batch_size {batch} got {job_list({job['job_id'] for job in got})}")
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


def _batch_fault(
    conn: psycopg.Connection, got: list[dict], by_id: dict[int, Job], left: list[Job], batch: int, caller: str
) -> str | None:
    """What one call got wrong, said after 'call N got', or None: `left` are the jobs still waiting."""
    for job in got:
        never = _never(job, by_id)
        if never:
            return f"job {job['job_id']}, which {never}"
    ids = {job["job_id"] for job in got}
    best = left[:batch]
    fault = _lease_fault(conn, sorted(ids), caller)
    if fault:
        return fault
    if len(ids) > batch:
        return f"{len(ids)} jobs: batch_size is the most one call may take"
    if not ids and best:
        return (
            f"no job while {len(left)} jobs of {NAME} {VERSION} waited, free and due "
            "(job_assigned_process_uuid, job_finished and job_dead_timestamp NULL, job_run_after past): your "
            "WHERE lets none of them through: a NULL is not false, nor '', and = NULL is never true; and a "
            "job is due as soon as job_run_after <= clock_timestamp(), these ones since a moment ago"
        )
    if len(ids) < len(best):
        return (
            f"{len(ids)} job{'' if len(ids) == 1 else 's'} ({job_list(ids)}) while {len(left)} jobs of "
            f"{NAME} {VERSION} waited: a call takes up to batch_size jobs at once (LIMIT batch_size)"
        )
    if ids != {job.job_id for job in best}:
        worse = max((by_id[i] for i in ids - {j.job_id for j in best}), key=_rank)
        better = min((j for j in best if j.job_id not in ids), key=_rank)
        return f"{worse}, but {better} waited: {_why(worse, better)}"
    return None


def _lease_fault(conn: psycopg.Connection, ids: list[int], caller: str) -> str | None:
    """What a job handed to `caller` lacks of a lease (held by it, since when, one attempt more and
    its open attempt recorded), or None."""
    for job_id, holder, since, attempts, open_attempts in conn.execute(
        _q()["lease"], {"ids": ids, "uuid": caller}
    ):
        if holder != caller:
            return f"job {job_id}, but it is leased to {holder or 'nobody'}, not to the caller {caller}"
        if not since:
            return f"job {job_id}, leased without a job_assign_timestamp: a lease says since when it is held"
        if attempts != 1:
            return (
                f"job {job_id}, which had no attempt before, and its job_attempts is {attempts} after the "
                "claim: each claim counts one attempt (the rescue dead-letters by that count)"
            )
        if open_attempts != 1:
            return (
                f"job {job_id} with {open_attempts} running attempts of the caller recorded in job_attempts: "
                "each claim records one (lease_jobs does the lease, the count and the record)"
            )
    return None


def _rank(job: Job) -> tuple[int, int]:
    """The order jobs are served in: lowest priority first, then the oldest."""
    return job.priority, -job.age


def _never(job: dict, by_id: dict[int, Job]) -> str | None:
    """Why no caller of NAME VERSION may get `job` (as find_job answered it), or None if one may."""
    process = (job["job_process_name"], job["job_process_version"])
    if process != (NAME, VERSION):
        return f"is a job of {' '.join(process)}: a worker of {NAME} {VERSION} may get only its own jobs"
    placed = by_id.get(job["job_id"])
    return "the checker never placed" if placed is None else placed.never


def _why(wrong: Job, better: Job) -> str:
    served = "jobs are served ORDER BY job_priority, job_create_timestamp"
    if better.priority < wrong.priority:
        return f"the lowest job_priority goes first ({better.priority} before {wrong.priority}): {served}"
    return f"among equal priorities the oldest job (job_create_timestamp) goes first: {served}"


# --- 3: a job held open, callers released together ------------------------------------------


def _while_one_is_held(
    lab: labs.Scratch, conn: psycopg.Connection, verdict: Verdict, rng: random.Random
) -> bool:
    """One schedule forced: a transaction holds the job it claimed while 3 to 5 callers ask at once."""
    racers = rng.randint(*RACERS)
    version = "held-open"
    waiting_jobs(conn, version, range(racers + 1, 0, -1))
    with (
        caller_connections(lab, racers, LOCK_WAIT_MS) as callers,
        lab.connect() as holder,
        holder.transaction(),
    ):
        first = handed(holder, version, 1, verdict, f"the holder, alone with {racers + 1} waiting jobs")
        if first is None:
            return False
        if len(first) != 1:
            return wrong(verdict, f"the holder, asking for one job of {racers + 1}, got {len(first)}")
        held = first[0]["job_id"]
        locked = conn.execute(_q()["locked_waiting"], {"version": version}).fetchone()[0]
        advisory = advisory_locks(conn, holder)  # taken by the holder's claim, its transaction open
        took: dict[int, float] = {}
        results = together(racers, lambda i: timed(took, i, lambda: ask(callers[i], version, 1)))
    # lock_timeout and NOWAIT both raise LockNotAvailable: the time it took tells waiting from not
    busy = [i for i, r in enumerate(results) if isinstance(r, psycopg.errors.LockNotAvailable)]
    at_once = [results[i] for i in busy if took.get(i, 0) < LOCK_WAIT_MS / 1000 * 0.8]
    waited = len(busy) - len(at_once)
    lock_na = psycopg.errors.LockNotAvailable
    failed = [r for r in results if isinstance(r, BaseException) and not isinstance(r, lock_na)]
    if failed:
        guarded = (
            f" (the holder's claim took {advisory} advisory lock(s): an advisory lock taken "
            "in the WHERE guards no row, so a caller whose snapshot still shows a job waiting leases it too)"
            if advisory
            else ""
        )
        return wrong(verdict, f"while a transaction held job {held}, {race_failure(failed[0])}{guarded}")
    what = f"while a transaction held job {held} open, {racers} callers released together"
    if at_once:
        return wrong(
            verdict,
            f"{what}: {len(at_once)} of them failed at once with {said(at_once[0])!r}: NOWAIT raises an "
            "error on a job another caller is claiming, where SKIP LOCKED passes over it and takes the next",
        )
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
    got = Counter(job["job_id"] for answer in answers for job in parse(answer) or [])
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
    served = sum(1 for a in answers if len(parse(a) or []) == 1)
    ok &= verdict.expect(
        served == racers,
        f"{what}: each got a job of its own ({job_list(got)})",
        f"{what}: only {served} got a job, though {racers} jobs besides the held one waited "
        f"(they answered {sorted(set(a for a in answers if not a.startswith('[')))})"
        + (
            f": the holder's claim of one job had locked {locked} jobs (the one it took among them), which "
            "SKIP LOCKED then passes over; lock only the rows the claim takes (LIMIT batch_size in the "
            "query that locks, not a slice or a LIMIT outside it)"
            if locked > 1
            else ""
        ),
    )
    return ok


def _let_through(lab: labs.Scratch, conn: psycopg.Connection, verdict: Verdict) -> None:
    """One schedule forced, to say what a waiting caller does once the holder commits.

    The holder claims a job and stays open; a caller asks and waits for the lock; then the holder
    commits. With FOR UPDATE, the caller re-checks the row, finds it taken and takes the next
    job. Without it, the caller read the job as waiting, and it leases the job a second time.
    """
    version = "let-through"
    waiting_jobs(conn, version, (2, 1))
    with caller_connections(lab, 1, HELD_WAIT_MS) as (b,), lab.connect() as a, lab.connect() as watch:
        with a.transaction():
            first = ask(a, version, 1)
            call = Call(lambda: ask(b, version, 1))
            waited = waits(call, b, watch, 10)
        answer = call.join(15)
    held = (parse(first) or [{}])[0].get("job_id")
    what = f"while a transaction held job {held}, a caller asked" + (
        "; it waited for the lock, and once that transaction committed, it" if waited else " and"
    )
    if isinstance(answer, psycopg.errors.UniqueViolation):
        verdict.wrong.append(
            f"{what} leased job {held} a second time, and job_attempts refused a second running attempt "
            f"({said(answer)}): without FOR UPDATE the SELECT reads a job another caller is leasing as "
            "still waiting, so two callers pick the same job"
        )
    elif isinstance(answer, BaseException):
        verdict.wrong.append(f"{what} failed: {said(answer)}")
    else:
        jobs = [job["job_id"] for job in parse(answer) or []]
        verdict.expect(
            held not in jobs,
            f"{what} took the next job ({job_list(jobs)}): FOR UPDATE re-checked the row it waited for, "
            "so the claim is right, only slow",
            f"{what} got job {held} too: one job must go to one worker only",
        )


# --- 3b, callers held inside their claim: claim_held.held_inside


# --- 4: a job given back is anybody's --------------------------------------------------------


def _given_back(lab: labs.Scratch, conn: psycopg.Connection, verdict: Verdict, rng: random.Random) -> bool:
    """A job claimed on one connection and failed (due again at once) goes to a caller on another.

    A claim whose lock outlives its transaction (a session-level advisory lock, say) keeps the job
    from every other connection for as long as the first stays open.
    """
    version = "given-back"
    waiting_jobs(conn, version, (10,))
    with lab.connect() as first, lab.connect() as second:
        mine = Identity.new(NAME, version)
        answer = ask(first, version, 1, mine.uuid)
        jobs = parse(answer) or []
        if len(jobs) != 1:
            return wrong(
                verdict, f"a caller asking for the one waiting job of {NAME} {version} got {answer!r}"
            )
        job = jobs[0]["job_id"]
        client(first).fail(mine, [job], "the checker failed it")
        other = handed(
            second, version, 1, verdict, f"a caller on another connection, once job {job} was failed"
        )
        if other is None:
            return False
    got = [j["job_id"] for j in other]
    what = f"job {job}, claimed on one connection and failed (due again at once: backoff_base is 0), "
    return verdict.expect(
        got == [job],
        f"{what}went to a caller on another connection while the first stayed open",
        f"{what}was not handed to a caller on another connection while the first stayed open: it got "
        f"{job_list(got)}. Something the first connection still holds keeps the job from others: a lock "
        "taken at session level (pg_try_advisory_lock) lasts until that connection unlocks it or closes; a "
        "row lock (FOR UPDATE) ends with the claim's transaction",
    )


# --- 5: many callers racing, over many trials -------------------------------------------------


def _races(lab: labs.Scratch, conn: psycopg.Connection, verdict: Verdict, rng: random.Random) -> bool:
    """TRIALS free races: CROWD_RACERS callers released together, each asking until it hears NO_JOB.

    No schedule is forced: the callers interleave as real workers do, and BACKING_OFF jobs ahead
    in the index make each claim's snapshot a few milliseconds older than the rows it reaches.
    A claim that checks a job's state in its snapshot, not under a row lock (an advisory lock, say),
    then takes jobs others leased meanwhile; the invariants over the trials catch it.
    """
    version = "race"
    scene = new_pipe_job(conn)
    conn.execute(
        _q()["backing_off"], {"pipe_job_id": scene, "name": NAME, "version": version, "jobs": BACKING_OFF}
    )
    conn.execute(_q()["analyze"])
    sizes: list[int] = []
    claims = 0
    with caller_connections(lab, CROWD_RACERS, LOCK_WAIT_MS) as callers:
        for trial in range(1, TRIALS + 1):
            count = rng.randint(24, 40)
            placed = {place(conn, scene, rng.choice((90, 100, 110)), rng.randint(1, 300), version=version)
                      for _ in range(count)}  # fmt: skip
            batches = [rng.randint(1, 3) for _ in callers]
            results = together(CROWD_RACERS, lambda i, b=batches: _ask_until_none(callers[i], version, b[i]))
            what = (
                f"in race {trial} of {TRIALS}, {CROWD_RACERS} callers released together over {count} waiting "
                f"jobs (behind {BACKING_OFF:,} still backing off), each asking until it heard {NO_JOB!r}"
            )
            fault = _race_fault(conn, results, {job.job_id for job in placed}, batches, what)
            if fault:
                return wrong(verdict, fault)
            sizes.append(count)
            claims += sum(len(r) for r in results if isinstance(r, list))
    verdict.held.append(
        f"in {TRIALS} races of {CROWD_RACERS} callers released together ({', '.join(map(str, sizes))} jobs, "
        f"{claims} calls that got jobs), every job went to one caller, once, with one attempt, and none was "
        "left waiting"
    )
    return True


def _ask_until_none(conn: psycopg.Connection, version: str, batch: int) -> list[list[int] | BaseException]:
    """What one racer was handed, call by call, until NO_JOB; a failed call ends it, kept as its last item."""
    calls: list[list[int] | BaseException] = []
    while True:
        try:
            jobs = parse(ask(conn, version, batch))
        except psycopg.Error as exc:
            calls.append(exc)
            return calls
        if not jobs:
            return calls
        calls.append([job["job_id"] for job in jobs])


def _race_fault(
    conn: psycopg.Connection, results: list, placed: set[int], batches: list[int], what: str
) -> str | None:
    """The first invariant one race broke, in a sentence, or None."""
    got: Counter[int] = Counter()
    for i, calls in enumerate(results):
        for call in [calls] if isinstance(calls, BaseException) else calls:
            if isinstance(call, BaseException):
                return f"{what}: {race_failure(call)}"
            if len(call) > batches[i]:
                return f"{what}: a caller with batch_size {batches[i]} got {len(call)} jobs in one call"
            got.update(call)
    twice = sorted(j for j, n in got.items() if n > 1)
    if twice:
        return (
            f"{what}: job {twice[0]} went to {got[twice[0]]} callers ({len(twice)} jobs went to more than "
            f"one): {LEASED_TWICE}"
        )
    stray = sorted(set(got) - placed)
    if stray:
        return f"{what}: a caller got job {stray[0]}, which is not one of the waiting jobs of this race"
    left = sorted(placed - set(got))
    if left:
        return (
            f"{what}: every caller heard {NO_JOB!r} while {job_list(left)} still waited: a caller may answer "
            f"{NO_JOB!r} only when no job is free"
        )
    leased = conn.execute(_q()["attempts_of"], {"ids": sorted(placed)}).fetchall()
    twice = [(job, n) for job, n in leased if n != 1]
    if twice:
        return f"{what}: job {twice[0][0]} was leased {twice[0][1]} times (job_attempts): {LEASED_TWICE}"
    return None


# --- 6: the cost of a claim in a long queue --------------------------------------------------


def _cost(lab: labs.Scratch, conn: psycopg.Connection, verdict: Verdict, rng: random.Random) -> bool:
    """COST_CALLS claims in one transaction (rolled back) beside CROWD waiting jobs of other processes.

    Measured by what PostgreSQL counts for the transaction in pg_stat_xact_user_tables: scans of the
    whole table, and rows fetched from it. Both are counts, the same on every machine and every run.
    """
    version = "cost"
    scene = new_pipe_job(conn)
    conn.execute(_q()["crowd"], {"pipe_job_id": scene, "jobs": CROWD})
    for age in range(COST_CALLS + 2, 0, -1):
        place(conn, scene, 100, age, version=version)
    conn.execute(_q()["analyze"])
    beside = f"beside {CROWD:,} jobs of other processes"
    with lab.connect() as asker, asker.transaction(force_rollback=True):
        scans0, rows0 = asker.execute(_q()["reads"]).fetchone()
        for call in range(1, COST_CALLS + 1):
            got = handed(asker, version, 1, verdict, f"call {call} {beside}")
            if got is None:
                return False
            if len(got) != 1:
                return wrong(
                    verdict,
                    f"call {call} {beside} got {len(got)} jobs while {COST_CALLS + 2} of {NAME} {version} "
                    "waited",
                )
        scans1, rows1 = asker.execute(_q()["reads"]).fetchone()
    scans, rows = scans1 - scans0, rows1 - rows0
    what = f"with {CROWD:,} jobs of other processes waiting, {COST_CALLS} claims"
    return verdict.expect(
        scans == 0 and rows <= READ_LIMIT,
        f"{what} read {rows} rows of job_queue and scanned the whole table 0 times: the partial index "
        "job_queue_waiting led them past the other processes' jobs straight to this one's best",
        f"{what} scanned the whole of job_queue {scans} times and read {rows:,} of its rows to hand out "
        f"{COST_CALLS} jobs: a claim must not grow with other processes' work. The planner uses the partial "
        "index job_queue_waiting only when your WHERE says what the index's does "
        "(job_assigned_process_uuid IS NULL AND job_finished IS NULL AND job_dead_timestamp IS NULL); "
        "coalesce(job_assigned_process_uuid, '') = '' says the same to a reader, not to the planner",
    )
