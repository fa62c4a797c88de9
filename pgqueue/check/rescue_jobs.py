"""Lesson 12's checker: the learner's `rescue_jobs`, called on leases made through the real find_job."""

from __future__ import annotations

import json
import time

import psycopg
from psycopg import sql

from pgqueue import queries
from pgqueue.check.callers import client, wrong
from pgqueue.check.core import Verdict, checker, install, said
from pgqueue.check.rescue_races import held_at_its_update, session_locks_kept, two_at_once, under_way
from pgqueue.check.rescue_scene import (
    FEWER_ATTEMPTS,
    LATER,
    LOCK_TIMEOUT,
    MAX_ATTEMPTS,
    NAME,
    SILENT,
    SLOW,
    VERSION,
    WAKE_WAIT,
    Job,
    Scene,
    age_heartbeat,
    beat_age,
    call_rescue,
    claim_ids,
    ended_attempts,
    job_now,
    lease_scene,
    lesson_queries,
    new_worker,
    rescuer_connection,
    worker_calls,
)
from pgqueue.queues import labs
from pgqueue.queues.heartbeats import Identity


def _q() -> queries.Queries:
    return queries.load("clients/check_rescue_jobs.sql")


@checker("your rescue_jobs", "hardened", examples=True, replaces=None)
def rescue_jobs(verdict: Verdict, lab: labs.Scratch, conn: psycopg.Connection, text: str, poc: str) -> None:
    """Whether the learner's `rescue_jobs` gives back the jobs of silent workers, and only theirs.

    On a scratch hardened lab with its examples, workers lease first_process jobs through find_job
    (with the kit's rescue_jobs); then the learner's replaces it, and it is called on silent,
    stopped, slow but live workers' jobs, on the job of a worker with no heartbeat row and on that
    of a beating worker whose kill switch is set, on a job out of attempts, while a silent
    worker's late finish holds its job's row in an open transaction, and held within its first
    statement while workers beat, finish and lease, and beside a second rescue. Every attempt that
    had ended before a call (succeeded, failed, rescued) must be left as it was. The threshold
    (rescue_after) is drawn for each call and said in the verdict.
    """
    scene = lease_scene(conn)  # leased with the kit's rescue_jobs, before the learner's replaces it
    if install(conn, text, verdict, replaces=["rescue_jobs"]) and _silent_and_stopped(
        lab, conn, scene, verdict
    ):
        _out_of_attempts(conn, scene, verdict)
        schedules = (_late_finish, under_way, held_at_its_update, two_at_once)
        all(schedule(lab, conn, scene, verdict) for schedule in schedules)


def _silent_and_stopped(lab: labs.Scratch, conn: psycopg.Connection, scene: Scene, verdict: Verdict) -> bool:
    """Checks 1, 2, 3, 6 and 7: one call after a worker went silent, another said it stopped, and a third's
    heartbeat row is gone; a slow worker's last beat is older than most, but within rescue_after, and
    a beating worker's kill switch is set (it is asked to stop, and finishes its job first)."""
    # the busy workers beat, as they do while they work: live now, however slow the setup was
    for busy in (scene.live, scene.dying, scene.late, scene.stopped, scene.killed):
        conn.execute(worker_calls()["pulse"], {"uuid": busy.uuid})
    kill = queries.load("clients/heartbeats.sql")["set_kill_switch"]
    conn.execute(kill, {"uuid": scene.killed.uuid, "on": True})
    silent = SILENT * scene.rescue_after
    age_heartbeat(conn, scene.silent, silent)
    age_heartbeat(conn, scene.live, SLOW * scene.rescue_after)
    conn.execute(worker_calls()["mark_stopped"], {"uuid": scene.stopped.uuid})
    conn.execute(_q()["forget_worker"], {"uuid": scene.ghost.uuid})
    before = {job_id: job_now(conn, job_id) for job_id in scene.holders()}
    history = ended_attempts(conn)
    channel = conn.execute(_q()["wake_channel"], {"name": NAME, "version": VERSION}).fetchone()[0]
    with lab.connect() as listener:
        listen = queries.load("clients/notify_listen.sql")["listen"]
        listener.execute(sql.SQL(listen).format(channel=sql.Identifier(channel)))
        when = (
            f"with worker {scene.silent.uuid} silent for {silent:g} s, worker {scene.stopped.uuid} stopped "
            f"and worker {scene.ghost.uuid} without a heartbeat row"
        )
        since = conn.execute(_q()["clock"]).fetchone()[0]
        freed = call_rescue(conn, verdict, when)
        if freed is None:
            return False
        heard = [n.payload for n in listener.notifies(timeout=WAKE_WAIT, stop_after=1)]
    after = {job_id: job_now(conn, job_id) for job_id in scene.holders()}
    given_back = sorted(j for j in after if before[j].holder and not after[j].holder)
    _history_kept(conn, history, verdict, "your rescue_jobs")
    silent_ok = _given_back(
        scene.silent_jobs,
        (before, after),
        scene.silent,
        verdict,
        lost=f"worker {scene.silent.uuid}, silent for {silent:g} s (rescue_after {scene.rescue_after:g} s),",
        why="a worker whose last heartbeat is older than rescue_after has lost its jobs",
        held=f"jobs {scene.silent_jobs} of worker {scene.silent.uuid}, silent for {silent:g} s (rescue_after "
        f"{scene.rescue_after:g} s), went back to the queue, their attempts ended 'rescued'",
    )
    stopped_ok = _given_back(
        [scene.stopped_job],
        (before, after),
        scene.stopped,
        verdict,
        lost=f"worker {scene.stopped.uuid}, which said it stopped though its heartbeat is fresh,",
        why="a stopped worker (process_stopped_timestamp set, as mark_stopped does) will never finish it",
        held=f"job {scene.stopped_job} of worker {scene.stopped.uuid}, which said it stopped (mark_stopped), "
        "went back to the queue too",
    )
    ghost_ok = _given_back(
        [scene.ghost_job],
        (before, after),
        scene.ghost,
        verdict,
        lost=f"worker {scene.ghost.uuid}, which has no heartbeat row at all,",
        why="a holder without a heartbeat row is as lost as a silent one; an inner JOIN to "
        "process_heartbeats drops its jobs before the WHERE sees them (a LEFT JOIN keeps them, with "
        "h.process_uuid IS NULL)",
        held=f"job {scene.ghost_job} of worker {scene.ghost.uuid}, which has no heartbeat row, went back too",
    )
    early = conn.execute(_q()["ended_before"], {"ids": given_back, "since": since}).fetchone()[0]
    verdict.expect(
        not early,
        "each attempt it ended has the time of the rescue as its end",
        f"the attempts of jobs {early} ended 'rescued' at a time before the rescue ran: attempt_ended is "
        "when the attempt was ended, the rescue's clock_timestamp(), not when it began",
    )
    done = job_now(conn, scene.finished_job)
    # its attempt is judged with the others that had ended (_history_kept): here, the job itself
    verdict.expect(
        done.finished and done.holder == scene.silent.uuid and not done.dead,
        f"job {scene.finished_job}, which the silent worker had finished before, stayed finished (not given "
        "back)",
        f"job {scene.finished_job}, which worker {scene.silent.uuid} had finished before it went silent, "
        f"was changed ({'finished' if done.finished else 'unfinished'}, held by {done.holder or 'nobody'}"
        f"{', dead-lettered' if done.dead else ''}): only unfinished jobs (job_finished IS NULL) can be lost",
    )
    verdict.expect(
        freed == len(given_back),
        f"it returned {freed}, the number of jobs it gave back",
        f"your rescue_jobs returned {freed} but gave back {len(given_back)} jobs {given_back}: "
        "return how many jobs it freed",
    )
    live = [(scene.live_job, scene.live), (scene.dying_job, scene.dying), (scene.late_job, scene.late)]
    if not _live_untouched(conn, live, after, scene.rescue_after, verdict):
        return False  # the later checks lease and finish the live workers' jobs
    # after the live workers: a rescue that takes every job is wrong by the heartbeat, not the switch
    if not _killed_untouched(conn, scene, after[scene.killed_job], verdict):
        return False  # as for the live workers: the later checks would count its job too
    _woken(heard, given_back, channel, verdict)
    again = call_rescue(conn, verdict, "called a second time at once")
    if again is None:
        return False
    verdict.expect(
        again == 0,
        "called again at once, it freed nothing more (returned 0)",
        f"called again at once, your rescue_jobs returned {again}: with no worker newly silent there is "
        "nothing more to free (only leased, unfinished jobs of silent workers are lost)",
    )
    if silent_ok and stopped_ok and ghost_ok:
        back = [*scene.silent_jobs, scene.stopped_job, scene.ghost_job]
        _claimed_again(conn, {job_id: before[job_id].attempts + 1 for job_id in sorted(back)}, verdict)
    return True


def _given_back(
    ids: list[int],
    jobs: tuple[dict[int, Job], dict[int, Job]],
    owner: Identity,
    verdict: Verdict,
    *,
    lost: str,
    why: str,
    held: str,
) -> bool:
    """Each job of `ids` unleased, not dead, its attempt by `owner` ended 'rescued', its count of
    attempts as it was (the ✓ line `held`); else the first fault. `jobs`: before and after the rescue."""
    before, after = jobs
    for job_id in ids:
        job = after[job_id]
        if job.holder:
            return wrong(verdict, f"job {job_id} of {lost} is still leased to it: {why}")
        if job.attempts != before[job_id].attempts:
            return wrong(verdict, _recounted(job, before[job_id].attempts))
        if job.dead:
            return wrong(
                verdict,
                f"job {job_id} of {lost} was dead-lettered ({job.error!r}) after {job.attempts} of its "
                f"{MAX_ATTEMPTS} attempts (max_attempts): only a job out of attempts is dead-lettered; this "
                "one goes back",
            )
        fault = _attempt_fault(job, owner)
        if fault:
            return wrong(verdict, fault)
    verdict.held.append(held)
    return True


def _recounted(job: Job, was: int) -> str:
    """The ✗ line for a rescue that changed a job's count of attempts."""
    return (
        f"job {job.job_id} went back with job_attempts {job.attempts}, where it was {was}: the claim "
        "that leased it counted that attempt already, and the next claim counts the next one; a rescue "
        "leaves job_attempts as it is (the attempt it ends stays a row of the table job_attempts, "
        "ended 'rescued')"
    )


def _attempt_fault(job: Job, owner: Identity, fate: str = "went back to the queue") -> str | None:
    """What is wrong with the latest attempt at a job taken from `owner`, or None if it ended 'rescued'."""
    if job.tried_by != owner.uuid:
        return f"job {job.job_id}'s latest attempt is not worker {owner.uuid}'s any more ({job.tried_by})"
    if job.running:
        return (
            f"job {job.job_id} {fate}, but worker {owner.uuid}'s attempt at it is still "
            "open: end it (attempt_ended) with outcome 'rescued', or the next claim of the job fails "
            "(one attempt runs at a time)"
        )
    if job.outcome != "rescued":
        return (
            f"job {job.job_id} {fate}, but worker {owner.uuid}'s attempt at it ended "
            f"{job.outcome!r}: an attempt taken from a silent worker ends 'rescued'"
        )
    return None


def _history_kept(
    conn: psycopg.Connection, before: dict[int, dict], verdict: Verdict, who: str, *, say_held: bool = True
) -> bool:
    """Every attempt that had ended before the rescue (`before`) is still there, each column as it was."""
    after = ended_attempts(conn)
    changed = [attempt_id for attempt_id, row in before.items() if after.get(attempt_id) != row]
    if not changed:
        outcomes = [row["outcome"] for row in before.values()]
        kinds = ", ".join(f"{outcomes.count(o)} {o}" for o in sorted(set(outcomes)))
        if say_held:
            verdict.held.append(
                f"{who} left the {len(before)} attempts that had ended before it ran ({kinds}) as they were"
            )
        return True
    was = before[changed[0]]
    now = after.get(changed[0])
    if now is None:
        how = "deleted it"
    else:
        columns = [c for c in was if was[c] != now[c]]
        how = "changed its " + ", ".join(
            f"{c} ({was[c]!r} became {now[c]!r})" if c in ("outcome", "error", "process_uuid") else c
            for c in columns
        )
    more = f" (and {len(changed) - 1} more ended attempts)" if len(changed) > 1 else ""
    return wrong(
        verdict,
        f"{who} rewrote attempt {was['attempt_id']} at job {was['job_id']} by worker {was['process_uuid']}, "
        f"which had ended {was['outcome']!r} before it ran: it {how}{more}. A rescue ends only the open "
        "attempt of each lost job (attempt_ended IS NULL); an attempt that has ended is the job's history "
        "and keeps its row as it was",
    )


def _killed_untouched(conn: psycopg.Connection, scene: Scene, job: Job, verdict: Verdict) -> bool:
    """Check 3, its kill switch: a beating worker asked to stop keeps its job, its attempt open."""
    who = scene.killed
    if job.holder == who.uuid and job.running:
        verdict.held.append(
            f"job {job.job_id} of worker {who.uuid}, beating with its kill switch set, was left to it"
        )
        return True
    state = f"held by {job.holder or 'nobody'}, its attempt {'open' if job.running else repr(job.outcome)}"
    return wrong(
        verdict,
        f"job {job.job_id} was taken from worker {who.uuid} ({state}), whose kill switch is set but which "
        f"beat {beat_age(conn, who):g} s ago (rescue_after {scene.rescue_after:g} s): it is alive (beating) "
        "and finishing its job; the kill switch only asks it to stop (find_job answers it 'kill' the next "
        "time it asks for work). A worker is lost by its heartbeat (older than rescue_after, or no row) or "
        "by process_stopped_timestamp, not by process_kill_switch",
    )


def _live_untouched(
    conn: psycopg.Connection,
    live: list[tuple[int, Identity]],
    after: dict[int, Job],
    rescue_after: float,
    verdict: Verdict,
) -> bool:
    """Check 3: the jobs of workers that beat within `rescue_after` are still theirs, their attempts open."""
    taken = [
        (job_id, who) for job_id, who in live if after[job_id].holder != who.uuid or not after[job_id].running
    ]
    if taken:
        job_id, who = taken[0]
        age = beat_age(conn, who)
        more = f" (and {len(taken) - 1} more jobs of live workers)" if len(taken) > 1 else ""
        return wrong(
            verdict,
            f"job {job_id} was taken from worker {who.uuid}, whose last heartbeat was {age:g} s ago, under "
            f"rescue_after ({rescue_after:g} s){more}: a live worker keeps its jobs (compare "
            "last_beat_timestamp with clock_timestamp() - rescue_after, the setting in queue_settings)",
        )
    verdict.held.append(
        f"the jobs of live workers (heartbeats under rescue_after, {rescue_after:g} s, old; the slowest "
        f"{SLOW * rescue_after:g} s) were left to them: {[job_id for job_id, _ in live]}"
    )
    return True


def _woken(heard: list[str], given_back: list[int], channel: str, verdict: Verdict) -> bool:
    """Check 6: the rescue woke the workers of the jobs' process, with a job id as the payload."""
    wake = "pg_notify(wake_channel(job_process_name, job_process_version), job_id::text)"
    listening = f"a worker listening on wake_channel('{NAME}', '{VERSION}')"
    if not heard:
        return wrong(
            verdict,
            f"after your rescue_jobs gave jobs {given_back} back, nothing was heard on {channel} "
            f"(wake_channel('{NAME}', '{VERSION}')) within {WAKE_WAIT:g} s: idle workers sleep until their "
            f"next poll; {wake} wakes them",
        )
    payload = heard[0]
    return verdict.expect(
        payload.isdigit() and int(payload) in given_back,
        f"{listening} was woken, with job {payload} as payload",
        f"{listening} heard {payload!r}: the payload is the id of a job given back ({given_back}), as "
        f"{wake} sends",
    )


def _claimed_again(conn: psycopg.Connection, attempts: dict[int, int], verdict: Verdict) -> bool:
    """Check 1, its end: another worker's find_job takes the jobs given back, each on its next attempt."""
    ids = list(attempts)
    taker = new_worker()
    try:
        answer = client(conn).ask(taker, batch=10)
    except psycopg.Error as exc:
        return wrong(
            verdict,
            f"worker {taker.uuid} asked for the jobs given back, and its find_job failed: {said(exc)}",
        )
    jobs = json.loads(answer) if answer.startswith("[") else []
    got = {job["job_id"]: job["job_attempts"] for job in jobs}
    if sorted(got) != ids:
        return wrong(
            verdict,
            f"worker {taker.uuid} asked for up to 10 jobs of {NAME} {VERSION} and got "
            f"{sorted(got) or answer!r}, while jobs {ids} were given back",
        )
    tries = ", ".join(f"job {job_id}: attempt {n}" for job_id, n in attempts.items())
    return verdict.expect(
        got == attempts,
        f"worker {taker.uuid}'s find_job then claimed jobs {ids}, each on its next attempt ({tries})",
        f"worker {taker.uuid}'s find_job claimed jobs {ids} again, on attempts {got}, where the next ones "
        f"were {tries}: a rescue gives a job back without changing job_attempts",
    )


def _out_of_attempts(conn: psycopg.Connection, scene: Scene, verdict: Verdict) -> bool:
    """Check 5: the job of a silent worker on its last attempt is dead-lettered, not given back.

    rescue_after is now LATER times longer, and a live worker is slower than rescue_after was before:
    it keeps its job. max_attempts is now FEWER_ATTEMPTS, which the job has used; its first attempt,
    rescued from the worker before, stays as it ended.
    """
    rescue_after = LATER * scene.rescue_after
    conn.execute(lesson_queries()["rescue_after"], {"seconds": rescue_after})
    conn.execute(lesson_queries()["retries"], {"max_attempts": FEWER_ATTEMPTS, "base": 1})
    silent = SILENT * rescue_after
    age_heartbeat(conn, scene.dying, silent)
    age_heartbeat(conn, scene.live, SLOW * rescue_after)
    job_id = scene.dying_job
    when = (
        f"with rescue_after {rescue_after:g} s, max_attempts {FEWER_ATTEMPTS} and worker {scene.dying.uuid}, "
        f"holding job {job_id}, silent"
    )
    history, was = ended_attempts(conn), job_now(conn, job_id).attempts
    if call_rescue(conn, verdict, when) is None:
        return False
    _history_kept(conn, history, verdict, f"{when}, your rescue_jobs", say_held=False)
    kept = {scene.live_job: job_now(conn, scene.live_job)}
    if not _live_untouched(conn, [(scene.live_job, scene.live)], kept, rescue_after, verdict):
        return False
    job = job_now(conn, job_id)
    used = f"job {job_id} had used {was} of its {FEWER_ATTEMPTS} attempts (max_attempts)"
    if job.attempts != was:
        return wrong(verdict, _recounted(job, was))
    if job.holder:
        return wrong(
            verdict,
            f"{used} and is still leased to worker {scene.dying.uuid}, silent for {silent:g} s: "
            "a silent worker's jobs are given back or, out of attempts, dead-lettered",
        )
    if not job.dead:
        return wrong(
            verdict,
            f"{used} when worker {scene.dying.uuid} went silent, yet it went back to the queue: a job out of "
            "attempts is dead-lettered (job_dead_timestamp and job_error set), or a job that kills every "
            "worker that runs it kills them all",
        )
    if not job.error:
        return wrong(
            verdict,
            f"{used} and was dead-lettered without a job_error: say why (its worker went silent in each "
            "attempt)",
        )
    fault = _attempt_fault(job, scene.dying, "was dead-lettered")
    if fault:
        return wrong(verdict, fault)
    verdict.held.append(
        f"{used} when its worker went silent: it was dead-lettered with the error {job.error!r}"
    )
    return True


def _late_finish(lab: labs.Scratch, conn: psycopg.Connection, scene: Scene, verdict: Verdict) -> bool:
    """Check 4, a forced schedule: a silent worker's late finish holds its job's row in an open transaction.

    The worker went silent, then finished its job after all (create_jobs, as its hand-over to the
    next step); while that transaction is open a rescuer runs, allowed to wait 2 s for a lock.
    A rescue that locks with SKIP LOCKED passes over the row; one that waits gives up after 2 s.
    """
    who, job_id = scene.late, scene.late_job
    # beside it, a job of another silent worker that nobody holds locked: the rescue has work to do
    # past its first statement, where a second statement that reads lost jobs afresh meets the row
    # (claimed first: the claim's find_job rescues whatever is lost by then)
    pipe_job = conn.execute(_q()["pipe_job"]).fetchone()[0]
    conn.execute(_q()["place_job"], {"pipe_job_id": pipe_job, "name": NAME, "version": "beside", "p": 10})
    beside_who = new_worker("beside")
    (beside,) = claim_ids(conn, beside_who)
    for silent in (who, beside_who):
        age_heartbeat(conn, silent, SILENT * LATER * scene.rescue_after)
    waited: float | None = None
    failed: str | None = None
    with lab.connect() as finisher, rescuer_connection(lab) as rescuer, finisher.transaction():
        client(finisher).hand_over(who, [job_id], [{}])
        started = time.monotonic()
        try:
            rescuer.execute(_q()["rescue"])
        except psycopg.errors.LockNotAvailable:
            waited = time.monotonic() - started
        except psycopg.Error as exc:
            failed = said(exc)
        during = job_now(conn, job_id)
        rescuer_pid = rescuer.info.backend_pid
        others = conn.execute(_q()["session_advisory_locks"], {"pid": rescuer_pid}).fetchone()[0]
    holding = f"while worker {who.uuid}'s late finish of job {job_id} held its row in an open transaction"
    if failed is not None:
        return wrong(verdict, f"{holding}, your rescue_jobs failed: {failed}")
    if waited is not None and waited < LOCK_TIMEOUT * 0.8:
        return wrong(
            verdict,
            f"{holding}, your rescue_jobs failed at once ({waited:.1f} s) on the lock on job {job_id}: "
            "NOWAIT raises an error on a row its worker is finishing, and every find_job calls rescue_jobs, "
            "so every worker would fail; SKIP LOCKED passes over it",
        )
    if not verdict.expect(
        waited is None,
        f"{holding}, your rescue_jobs passed over it without waiting (lock_timeout {LOCK_TIMEOUT} s)",
        f"{holding}, your rescue_jobs waited {waited or 0:.1f} s for "
        + (
            f"a lock and gave up (lock_timeout {LOCK_TIMEOUT} s): {others} advisory lock(s) taken at session "
            "level by earlier calls are still held by their sessions (pg_advisory_lock lasts until the "
            "session unlocks it or ends), so a rescue on another connection waits for good; take a "
            "transaction-level lock, or rely on the row locks alone"
            if others
            else f"the lock on job {job_id} and gave up (lock_timeout {LOCK_TIMEOUT} s): FOR UPDATE SKIP "
            "LOCKED passes over a row that its worker is finishing, and the second statement keeps to the "
            "candidates the first locked (job_id = ANY (candidates)), or it meets that row again; every "
            "find_job calls rescue_jobs, so every worker would wait"
        ),
    ):
        return False
    if during.holder != who.uuid:
        return wrong(
            verdict,
            f"{holding}, your rescue_jobs took it (held by {during.holder or 'nobody'}): a job its worker "
            "is finishing right now is not lost",
        )
    if job_now(conn, beside).holder:
        return wrong(
            verdict,
            f"{holding}, your rescue_jobs passed over it, but left job {beside} of worker {beside_who.uuid}, "
            "silent as long and locked by nobody, with its worker: a silent worker's job goes back"
            + session_locks_kept(conn, rescuer_pid),
        )
    after = job_now(conn, job_id)
    return verdict.expect(
        after.finished and after.tried_by == who.uuid and after.outcome == "succeeded" and not after.running,
        f"once the late finish committed, job {job_id} was finished, worker {who.uuid}'s attempt 'succeeded'",
        f"once the late finish committed, job {job_id} is {'finished' if after.finished else 'unfinished'} "
        f"with its last attempt {after.outcome!r} by {after.tried_by}: it should be finished, its attempt "
        "'succeeded'",
    )
