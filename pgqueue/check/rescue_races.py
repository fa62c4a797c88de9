"""The rescue judge's forced schedules: a rescue held while workers act; two rescues at once."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

import psycopg

from pgqueue import queries
from pgqueue.check.callers import Said, client, hand_over, wrong
from pgqueue.check.core import Call, Hold, Verdict, holding, said
from pgqueue.check.rescue_scene import (
    HELD,
    LATER,
    LOCK_TIMEOUT,
    NAME,
    SILENT,
    Scene,
    age_heartbeat,
    claim_ids,
    job_now,
    new_worker,
    rescuer_connection,
    worker_calls,
)
from pgqueue.queues import labs
from pgqueue.queues.heartbeats import Identity
from pgqueue.wait import Timeout


def _q() -> queries.Queries:
    return queries.load("clients/check_rescue_jobs.sql")


def under_way(lab: labs.Scratch, conn: psycopg.Connection, scene: Scene, verdict: Verdict) -> bool:
    """Check 8, a forced schedule: what workers do while a rescue is under way, after its snapshot.

    Three workers of a version of their own hold a job each and look silent. A rescuer calls
    rescue_jobs, held by the kit's hold (core.Hold) at its first reading of the clock (kit
    functions of the clocks' names, and of timestamptz +/- interval, first on its search_path):
    its statement has its snapshot by then. Meanwhile one worker beats, one finishes its job, and
    a new worker's find_job rescues the third's job and leases it. Let go, the rescue must leave
    all three as they are: what its snapshot showed as lost is not lost any more. A rescue that
    reads no clock that way is not held, and not judged here.
    """
    rescue_after = LATER * scene.rescue_after
    silent = SILENT * rescue_after
    version = "under-way"
    pipe_job = conn.execute(_q()["pipe_job"]).fetchone()[0]
    for priority in (10, 20, 30):
        conn.execute(
            _q()["place_job"], {"pipe_job_id": pipe_job, "name": NAME, "version": version, "p": priority}
        )
    dead, beater, finisher, leaser = (new_worker(version) for _ in range(4))
    (lost,), (kept,), (done,) = (claim_ids(conn, who) for who in (dead, beater, finisher))
    for who in (dead, beater, finisher):
        age_heartbeat(conn, who, silent)
    conn.execute(_q()["install_pause"])
    finish: Said | None = None
    leased: list[int] | str = []
    with lab.connect() as rescuer, lab.connect() as coordinator, rescuer_connection(lab) as worker:
        hold = Hold(coordinator)
        rescuer.execute(_q()["pause_on"])
        rescuer_pid = rescuer.info.backend_pid
        hold.arm(rescuer, 1)
        hold.close(1)
        call = Call(lambda: rescuer.execute(_q()["rescue"]).fetchone()[0])
        with contextlib.suppress(Timeout):  # never held: it never read the clock
            hold.stops(rescuer, call, HELD)
        held = not call.done
        if held:
            worker.execute(worker_calls()["pulse"], {"uuid": beater.uuid})
            finish = hand_over(worker, finisher.uuid, [done])
            leased = _ask(worker, leaser)
        hold.open(1)
        freed = call.join(HELD + LOCK_TIMEOUT)
    if not held:
        return ran_through(conn, verdict, freed, [lost, kept, done], rescuer_pid, "under way")
    if not call.done:
        return wrong(verdict, "while a rescue was under way, your rescue_jobs never answered")
    what = (
        f"while your rescue_jobs was under way (held at its first reading of the clock, rescue_after "
        f"{rescue_after:g} s), worker {beater.uuid}, silent for {silent:g} s, beat; worker {finisher.uuid} "
        f"finished job {done}; and worker {leaser.uuid} rescued job {lost} from silent worker {dead.uuid} "
        "and leased it"
    )
    if isinstance(freed, BaseException):
        return wrong(verdict, f"{what}; then your rescue_jobs failed: {said(freed)}")
    if finish is not None and not finish.ok:
        return wrong(
            verdict,
            f"while your rescue_jobs was under way, worker {finisher.uuid}'s create_jobs of its job {done} "
            f"failed ({finish.words}): a rescue locks only the jobs it finds lost, and passes over others",
        )
    stale = (
        "your first statement's snapshot is older than what they did, so whatever it saw as lost must be "
        "read again, under the lock, by a second statement that begins once the rows are yours"
    )
    now = {job_id: job_now(conn, job_id) for job_id in (lost, kept, done)}
    if now[kept].holder != beater.uuid or not now[kept].running:
        return wrong(
            verdict,
            f"{what}; your rescue then took job {kept} from worker {beater.uuid}, which had beaten: {stale}",
        )
    if leased == [lost] and (now[lost].holder != leaser.uuid or not now[lost].running):
        return wrong(
            verdict,
            f"{what}; your rescue then took job {lost} from worker {leaser.uuid}, whose heartbeat is fresh. "
            f"Re-checked under the lock, the job's new version joins no heartbeat your old snapshot can see, "
            f"so it looks like a job of nobody: {stale}",
        )
    if leased != [lost] and now[lost].holder:
        return wrong(
            verdict,
            f"{what} (it heard {leased!r}); job {lost} of silent worker {dead.uuid} is still leased to "
            f"{now[lost].holder}: a silent worker's job goes back{session_locks_kept(conn, rescuer_pid)}",
        )
    if not (now[done].finished and now[done].outcome == "succeeded"):
        return wrong(
            verdict,
            f"{what}; job {done} is not finished with a succeeded attempt any more ({now[done].outcome!r})",
        )
    expected = 0 if leased == [lost] else 1
    return verdict.expect(
        freed == expected,
        f"{what}: your rescue then left all three as they were, and returned {freed}",
        f"{what}: your rescue left the jobs right but returned {freed}, where it freed {expected}",
    )


@contextlib.contextmanager
def _held_at_update(lab: labs.Scratch) -> Iterator[tuple[Hold, psycopg.Connection, psycopg.Connection]]:
    """The kit's hold at the first UPDATE of job_queue inside rescue_jobs, and two rescuers'
    connections: the first armed (held once it gets there), the second not."""
    with (
        lab.connect() as watch,
        holding(
            watch, "job_queue", when="BEFORE", event="UPDATE", level="STATEMENT", inside="rescue_jobs"
        ) as hold,
        rescuer_connection(lab) as first,
        rescuer_connection(lab) as second,
    ):
        hold.arm(first, 1)
        hold.close(1)
        yield hold, first, second


def held_at_its_update(lab: labs.Scratch, conn: psycopg.Connection, scene: Scene, verdict: Verdict) -> bool:
    """Check 9, a forced schedule: a rescue held at its first UPDATE of job_queue while a worker leases.

    A silent worker holds a job. The rescue is held by the kit's hold (core.holding) at its first
    UPDATE of job_queue, a statement whose snapshot is taken by then and whose rows it has not
    locked yet. Meanwhile a new worker's find_job (its rescue, then its claim) takes that job if
    nothing locked it. Let go, the rescue must leave a job leased meanwhile with its new worker:
    one whose lock comes only in the statement that frees the job re-checks the job's new version
    against heartbeats of its old snapshot, where the new worker's row is not, and frees a live
    worker's job.
    """
    rescue_after = LATER * scene.rescue_after
    version = "at-update"
    pipe_job = conn.execute(_q()["pipe_job"]).fetchone()[0]
    conn.execute(_q()["place_job"], {"pipe_job_id": pipe_job, "name": NAME, "version": version, "p": 10})
    dead, leaser = new_worker(version), new_worker(version)
    (lost,) = claim_ids(conn, dead)
    age_heartbeat(conn, dead, SILENT * rescue_after)
    leased: list[int] | str = []
    with _held_at_update(lab) as (hold, rescuer, worker):
        rescuer_pid = rescuer.info.backend_pid
        call = Call(lambda: rescuer.execute(_q()["rescue"]).fetchone()[0])
        stop = None
        try:
            stop = hold.stops(rescuer, call, HELD)
            if stop == "held":
                leased = _ask(worker, leaser)
        except Timeout:
            pass  # judged below: a rescue that neither answered nor stopped
        finally:
            hold.open_all()
            freed = call.join(HELD + LOCK_TIMEOUT)
    if stop != "held":
        return ran_through(conn, verdict, freed, [lost], rescuer_pid, "held at its update")
    if isinstance(freed, BaseException):
        cause = said(freed)
        return wrong(
            verdict,
            f"a rescue held at its first UPDATE of job_queue while a worker's find_job rescued and claimed "
            f"(it heard {leased!r}), then failed: {cause}{_shared_lock_hint(cause)}",
        )
    what = (
        f"while your rescue_jobs was held at its first UPDATE of job_queue (that statement's snapshot "
        f"taken, rescue_after {rescue_after:g} s), worker {leaser.uuid}'s find_job "
    )
    now = job_now(conn, lost)
    if leased == [lost]:
        what += f"rescued job {lost} from silent worker {dead.uuid} and leased it"
        return verdict.expect(
            now.holder == leaser.uuid and now.running,
            f"{what}: your rescue then left it with {leaser.uuid}, and returned {freed}",
            f"{what}; your rescue then took it from {leaser.uuid}, whose heartbeat is fresh: it locked the "
            "job only in the statement that frees it, whose snapshot is older than the new lease, so the "
            "job's new version, re-checked under the lock, joins no heartbeat that snapshot can see and "
            "looks like a job of nobody; lock the candidates in a first statement (FOR UPDATE SKIP "
            "LOCKED), and free them in a second that reads them again",
        )
    what += f"did not get job {lost} (it heard {leased!r})"
    after = (
        f"job {lost} is still leased to {now.holder}"
        if now.holder
        else f"your rescue returned {freed}, for 1"
    )
    return verdict.expect(
        now.holder is None and freed == 1, f"{what}; your rescue then gave it back", f"{what}; then {after}"
    )


def two_at_once(lab: labs.Scratch, conn: psycopg.Connection, scene: Scene, verdict: Verdict) -> bool:
    """Check 10, a forced schedule: two rescues at once, as two workers' find_job calls rescue.

    Three silent workers of a version of their own hold a job each. Rescue A is held by the kit's
    hold (core.holding) at its first UPDATE of job_queue: whatever its first statement locked, it
    holds. Rescue B runs meanwhile, to its end or to a lock it waits for; then A is let go. Both must
    end without an error, and each lost job must be given back once, by one of them.
    """
    rescue_after = LATER * scene.rescue_after
    version = "two-at-once"
    pipe_job = conn.execute(_q()["pipe_job"]).fetchone()[0]
    for priority in (10, 20, 30):
        conn.execute(
            _q()["place_job"], {"pipe_job_id": pipe_job, "name": NAME, "version": version, "p": priority}
        )
    holders = [new_worker(version) for _ in range(3)]
    lost = [job for who in holders for job in claim_ids(conn, who)]
    for who in holders:
        age_heartbeat(conn, who, SILENT * rescue_after)
    with _held_at_update(lab) as (hold, first, second):
        first_pid = first.info.backend_pid
        a = Call(lambda: first.execute(_q()["rescue"]).fetchone()[0])
        stop = b_stop = None
        try:
            stop = hold.stops(first, a, HELD)
            if stop == "held":
                b = Call(lambda: second.execute(_q()["rescue"]).fetchone()[0])
                b_stop = hold.stops(second, b, HELD)
        except Timeout:
            pass  # judged below: a call that neither answered nor stopped
        finally:
            hold.open_all()
            results = {"the first": a.join(HELD + LOCK_TIMEOUT)}
            if stop == "held":
                results["the second"] = b.join(HELD + LOCK_TIMEOUT)
    if stop != "held":  # it answered before any UPDATE of job_queue
        return ran_through(conn, verdict, results["the first"], lost, first_pid, "two at once")
    what = (
        f"two rescues at once (rescue_after {rescue_after:g} s, jobs {', '.join(map(str, lost))} of three "
        "silent workers): the first held at its first UPDATE of job_queue, the second run meanwhile"
        + (f", which waited for a lock ({b_stop})" if b_stop else "")
    )
    for who, result in results.items():
        if isinstance(result, BaseException):
            cause = said(result)
            return wrong(verdict, f"{what}: {who} rescue failed ({cause}){_shared_lock_hint(cause)}")
    rescued = {job: conn.execute(_q()["rescued_attempts"], {"job_id": job}).fetchone()[0] for job in lost}
    twice = [job for job, count in rescued.items() if count > 1]
    if twice:
        return wrong(
            verdict,
            f"{what}: job {twice[0]} was rescued {rescued[twice[0]]} times, an attempt ended by each "
            "rescue: both found it lost, as neither locked it against the other (lock the candidates FOR "
            "UPDATE, SKIP LOCKED, in the first statement)",
        )
    kept = [job for job in lost if job_now(conn, job).holder]
    freed = [results["the first"], results["the second"]]
    return verdict.expect(
        not kept and not [job for job, count in rescued.items() if count != 1] and sum(freed) == len(lost),
        f"{what}: each of the {len(lost)} lost jobs was given back once ({freed[0]} by the first, "
        f"{freed[1]} by the second)",
        f"{what}: "
        + (
            f"job {kept[0]} is still held by its silent worker"
            if kept
            else f"they returned {freed[0]} and {freed[1]}, for {len(lost)} jobs given back once each"
        ),
    )


def ran_through(
    conn: psycopg.Connection, verdict: Verdict, freed: object, lost: list[int], pid: int, schedule: str
) -> bool:
    """A rescue the schedule could not hold (it read no clock, or made no UPDATE of job_queue): it
    ran to its end on a new connection while the jobs `lost` had silent workers, and must have
    given each of them back. An earlier session that still holds an advisory lock is named."""
    what = (
        f"in the '{schedule}' schedule your rescue_jobs ran to its end on a new connection (the kit could "
        f"not hold it) while the workers of jobs {', '.join(map(str, lost))} were silent"
    )
    if isinstance(freed, BaseException):
        return wrong(verdict, f"{what}; it failed: {said(freed)}")
    kept = [job for job in lost if job_now(conn, job).holder]
    if not kept and freed == len(lost):
        return verdict.expect(True, f"{what}: it gave back all {len(lost)}, and returned {freed}", "")
    cause = session_locks_kept(conn, pid)
    if kept:
        return wrong(verdict, f"{what}; job {kept[0]} is still leased to its silent worker{cause}")
    return wrong(verdict, f"{what}; it gave them back but returned {freed}, for {len(lost)}{cause}")


def session_locks_kept(conn: psycopg.Connection, pid: int) -> str:
    """': ' and why a rescue on backend `pid` was kept out, if other sessions still hold advisory
    locks between calls (taken at session level by earlier rescues); else ''."""
    others = conn.execute(_q()["session_advisory_locks"], {"pid": pid}).fetchone()[0]
    if not others:
        return ""
    return (
        f": {others} advisory lock(s) taken at session level are still held by sessions that called "
        "rescue_jobs before (pg_advisory_lock and pg_try_advisory_lock last until the session ends or "
        "unlocks), so a rescue on any other connection is kept out for good; take pg_try_advisory_xact_lock, "
        "which the commit lets go, or rely on the row locks alone"
    )


def _shared_lock_hint(cause: str) -> str:
    """Why two rescues failed on one job's lock, if they waited for each other."""
    if "deadlock" not in cause and "lock timeout" not in cause:
        return ""
    return (
        ": both locked the same lost jobs with a lock the other could share too (FOR SHARE, FOR KEY "
        "SHARE), then each waited for the other to let go so that it could change them; the first "
        "statement locks its candidates FOR UPDATE, SKIP LOCKED, so a second rescue passes them over"
    )


def _ask(conn: psycopg.Connection, who: Identity) -> list[int] | str:
    """The job ids one find_job call of `who` was handed, or what it answered otherwise."""
    try:
        answer = client(conn).ask(who)
    except psycopg.Error as exc:
        return said(exc)
    return [job["job_id"] for job in json.loads(answer)] if answer.startswith("[") else answer
