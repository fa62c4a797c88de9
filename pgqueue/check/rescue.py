"""Lesson 12's checker: the learner's `rescue_jobs`, called on leases made through the real find_job."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from pgqueue import labs, queries
from pgqueue.check.core import Verdict, install, written
from pgqueue.heartbeats import Identity

NAME, VERSION = "first_process", "1.9.2"  # the first step of pipeline 2, which every worker here runs
RESCUE_AFTER = 5  # seconds (rescue_after): every live worker here beat well within it
SILENT = 60  # seconds: how long ago a silent worker last beat
MAX_ATTEMPTS = 2
LOCK_TIMEOUT = 2  # seconds a rescuer may wait for a row lock before it gives up
WAKE_WAIT = 2.0  # seconds to wait for a wake-up after a rescue


def _q() -> queries.Queries:
    return queries.load("clients/check_rescue.sql")


def _calls() -> queries.Queries:
    return queries.load("clients/hardened.sql")


def _lesson() -> queries.Queries:
    return labs.step("hardened", "find_job").lesson


@dataclass(frozen=True)
class Scene:
    """The leases the checker made before the learner's rescue_jobs was installed."""

    silent: Identity  # will stop beating: loses its two jobs
    silent_jobs: list[int]
    finished_job: int  # the silent worker finished this one before: not its to lose
    stopped: Identity  # said it stopped (mark_stopped), heartbeat fresh: loses its job
    stopped_job: int
    live: Identity  # keeps beating: keeps its job
    live_job: int
    dying: Identity  # holds a job on its last attempt (max_attempts): dead-lettered when silent
    dying_job: int
    late: Identity  # goes silent, then finishes its job late while a rescue runs
    late_job: int

    def holders(self) -> dict[int, Identity]:
        """Every leased job of the scene and its worker."""
        pairs = [(j, self.silent) for j in self.silent_jobs] + [
            (self.stopped_job, self.stopped),
            (self.live_job, self.live),
            (self.dying_job, self.dying),
            (self.late_job, self.late),
        ]
        return dict(pairs)


def rescue_jobs(text: object) -> Verdict:
    """Whether the learner's `rescue_jobs` gives back the jobs of silent workers, and only theirs.

    On a scratch hardened lab with its examples, workers lease first_process jobs through find_job
    (with the kit's rescue_jobs); then the learner's replaces it, and it is called on silent,
    stopped and live workers' jobs, on a job out of attempts, and while a silent worker's late
    finish holds its job's row in an open transaction.
    """
    verdict = Verdict("your rescue_jobs")
    if written(text, verdict) is None:
        return verdict
    with labs.scratch("hardened", examples=True) as lab, lab.connect() as conn:
        scene = _scene(conn)
        if not install(conn, text, verdict, replaces=["rescue_jobs"]):
            return verdict
        if _silent_and_stopped(lab, conn, scene, verdict):
            _out_of_attempts(conn, scene, verdict)
            _late_finish(lab, conn, scene, verdict)
    return verdict


def _scene(conn: psycopg.Connection) -> Scene:
    """Seven first_process jobs leased through find_job, every worker beating, the kit's rescue in place."""
    lesson = _lesson()
    conn.execute(lesson["rescue_after"], {"seconds": RESCUE_AFTER})
    conn.execute(lesson["retries"], {"max_attempts": MAX_ATTEMPTS, "base": 1})
    conn.execute(_q()["requests"], {"count": 7})
    first, dying = _worker(), _worker()
    (job,) = _claim(conn, first)
    # the first holder dies; the next caller's find_job rescues the job and takes it: attempt 2 of 2
    conn.execute(lesson["age_heartbeat"], {"uuid": first.uuid, "seconds": SILENT})
    if _claim(conn, dying) != [job]:
        raise RuntimeError(f"the kit's rescue_jobs did not hand job {job} to the next caller")
    silent, stopped, live, late = (_worker() for _ in range(4))
    (finished,) = _claim(conn, silent)
    params = {"uuid": silent.uuid, "job_ids": [finished], "payloads": Jsonb([{}])}
    conn.execute(_calls()["create_jobs"], params)
    silent_jobs = _claim(conn, silent, batch=2)
    (stopped_job,) = _claim(conn, stopped)
    (live_job,) = _claim(conn, live)
    (late_job,) = _claim(conn, late)
    return Scene(
        silent, silent_jobs, finished, stopped, stopped_job, live, live_job, dying, job, late, late_job
    )


def _worker() -> Identity:
    return Identity.new(NAME, VERSION)


def _claim(conn: psycopg.Connection, who: Identity, batch: int = 1) -> list[int]:
    """The ids of the jobs `who` leases with one find_job call."""
    params = {"uuid": who.uuid, "server": who.server, "name": who.name, "version": who.version}
    answer = conn.execute(_calls()["find_job"], {**params, "multi": False, "batch": batch}).fetchone()[0]
    if not answer.startswith("["):
        raise RuntimeError(f"{who} expected {batch} jobs from find_job, heard {answer!r}")
    return [job["job_id"] for job in json.loads(answer)]


@dataclass(frozen=True)
class Job:
    """A job as the checker judges it, with its latest attempt."""

    job_id: int
    holder: str | None
    finished: bool
    dead: bool
    error: str | None
    attempts: int
    tried_by: str | None
    running: bool
    outcome: str | None


def _job(conn: psycopg.Connection, job_id: int) -> Job:
    return Job(*conn.execute(_q()["job"], {"job_id": job_id}).fetchone())


def _rescue(conn: psycopg.Connection, verdict: Verdict, when: str) -> int | None:
    """What the learner's rescue_jobs returned, or None after saying how it failed or what it returned."""
    try:
        freed = conn.execute(_q()["rescue"]).fetchone()[0]
    except psycopg.Error as exc:
        verdict.refuse(f"{when}, your rescue_jobs failed: {_said(exc)}")
        return None
    if not isinstance(freed, int):
        verdict.refuse(
            f"{when}, your rescue_jobs returned {freed!r}: it returns how many jobs it freed "
            "(RETURNS integer)"
        )
        return None
    return freed


def _silent_and_stopped(lab: labs.Scratch, conn: psycopg.Connection, scene: Scene, verdict: Verdict) -> bool:
    """Checks 1, 2, 3, 6 and 7: one call after a worker went silent and another said it stopped."""
    # the busy workers beat, as they do while they work: live now, however slow the setup was
    for busy in (scene.live, scene.dying, scene.late, scene.stopped):
        conn.execute(_calls()["pulse"], {"uuid": busy.uuid})
    conn.execute(_lesson()["age_heartbeat"], {"uuid": scene.silent.uuid, "seconds": SILENT})
    conn.execute(_calls()["mark_stopped"], {"uuid": scene.stopped.uuid})
    before = {job_id: _job(conn, job_id) for job_id in scene.holders()}
    channel = conn.execute(_q()["wake_channel"], {"name": NAME, "version": VERSION}).fetchone()[0]
    with lab.connect() as listener:
        listen = queries.load("clients/notify_listen.sql")["listen"]
        listener.execute(sql.SQL(listen).format(channel=sql.Identifier(channel)))
        when = (
            f"with worker {scene.silent.uuid} silent for {SILENT} s and worker {scene.stopped.uuid} stopped"
        )
        freed = _rescue(conn, verdict, when)
        if freed is None:
            return False
        heard = [n.payload for n in listener.notifies(timeout=WAKE_WAIT, stop_after=1)]
    after = {job_id: _job(conn, job_id) for job_id in scene.holders()}
    given_back = sorted(j for j in after if before[j].holder and not after[j].holder)

    silent_ok = _given_back(
        scene.silent_jobs,
        after,
        scene.silent,
        verdict,
        lost=f"worker {scene.silent.uuid}, silent for {SILENT} s (rescue_after is {RESCUE_AFTER} s),",
        why="a worker whose last heartbeat is older than rescue_after has lost its jobs",
    )
    if silent_ok:
        verdict.held.append(
            f"jobs {scene.silent_jobs} of worker {scene.silent.uuid}, silent for {SILENT} s (rescue_after "
            f"{RESCUE_AFTER} s), went back to the queue, their attempts ended 'rescued'"
        )
    stopped_ok = _given_back(
        [scene.stopped_job],
        after,
        scene.stopped,
        verdict,
        lost=f"worker {scene.stopped.uuid}, which said it stopped though its heartbeat is fresh,",
        why="a stopped worker (process_stopped_timestamp set, as mark_stopped does) will never finish it",
    )
    if stopped_ok:
        verdict.held.append(
            f"job {scene.stopped_job} of worker {scene.stopped.uuid}, which said it stopped (mark_stopped), "
            "went back to the queue too"
        )
    done = _job(conn, scene.finished_job)
    verdict.expect(
        done.finished and done.holder == scene.silent.uuid and done.outcome == "succeeded",
        f"job {scene.finished_job}, which the silent worker had finished before, was left as it was",
        f"job {scene.finished_job}, which worker {scene.silent.uuid} had finished before it went silent, "
        f"was changed (held by {done.holder or 'nobody'}, last attempt {done.outcome!r}): only unfinished "
        "jobs (job_finished IS NULL) can be lost",
    )
    verdict.expect(
        freed == len(given_back),
        f"it returned {freed}, the number of jobs it gave back",
        f"your rescue_jobs returned {freed} but gave back {len(given_back)} jobs {given_back}: "
        "return how many jobs it freed",
    )
    if not _live_untouched(conn, scene, after, verdict):
        return False  # the later checks lease and finish the live workers' jobs
    _woken(heard, given_back, channel, verdict)
    again = _rescue(conn, verdict, "called a second time at once")
    if again is None:
        return False
    verdict.expect(
        again == 0,
        "called again at once, it freed nothing more (returned 0)",
        f"called again at once, your rescue_jobs returned {again}: with no worker newly silent there is "
        "nothing more to free (only leased, unfinished jobs of silent workers are lost)",
    )
    if silent_ok and stopped_ok:
        _claimed_again(conn, sorted([*scene.silent_jobs, scene.stopped_job]), verdict)
    return True


def _given_back(
    ids: list[int], after: dict[int, Job], owner: Identity, verdict: Verdict, *, lost: str, why: str
) -> bool:
    """Each job of `ids` unleased, not dead, its attempt by `owner` ended 'rescued'; else the first fault."""
    for job_id in ids:
        job = after[job_id]
        if job.holder:
            return verdict.expect(False, "", f"job {job_id} of {lost} is still leased to it: {why}")
        if job.dead:
            return verdict.expect(
                False,
                "",
                f"job {job_id} of {lost} was dead-lettered ({job.error!r}) after {job.attempts} of its "
                f"{MAX_ATTEMPTS} attempts: only a job out of attempts is dead-lettered; this one goes back",
            )
        fault = _attempt_fault(job, owner)
        if fault:
            return verdict.expect(False, "", fault)
    return True


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


def _live_untouched(conn: psycopg.Connection, scene: Scene, after: dict[int, Job], verdict: Verdict) -> bool:
    """Check 3: the jobs of workers that beat recently are still theirs, their attempts running."""
    live = [(scene.live_job, scene.live), (scene.dying_job, scene.dying), (scene.late_job, scene.late)]
    taken = [
        (job_id, who) for job_id, who in live if after[job_id].holder != who.uuid or not after[job_id].running
    ]
    if taken:
        job_id, who = taken[0]
        age = conn.execute(_q()["beat_age"], {"uuid": who.uuid}).fetchone()[0]
        more = f" (and {len(taken) - 1} more jobs of live workers)" if len(taken) > 1 else ""
        return verdict.expect(
            False,
            "",
            f"job {job_id} was taken from worker {who.uuid}, whose last heartbeat was {age:g} s ago, under "
            f"rescue_after ({RESCUE_AFTER} s){more}: a live worker keeps its jobs (compare "
            "last_beat_timestamp with clock_timestamp() - rescue_after)",
        )
    return verdict.expect(
        True,
        f"the jobs of live workers (heartbeats under {RESCUE_AFTER} s old) were left to them: "
        f"{[job_id for job_id, _ in live]}",
        "",
    )


def _woken(heard: list[str], given_back: list[int], channel: str, verdict: Verdict) -> bool:
    """Check 6: the rescue woke the workers of the jobs' process, with a job id as the payload."""
    wake = "pg_notify(wake_channel(job_process_name, job_process_version), job_id::text)"
    if not heard:
        return verdict.expect(
            False,
            "",
            f"after your rescue_jobs gave jobs {given_back} back, nothing was heard on {channel} "
            f"(wake_channel('{NAME}', '{VERSION}')) within {WAKE_WAIT:g} s: idle workers sleep until their "
            f"next poll; {wake} wakes them",
        )
    payload = heard[0]
    return verdict.expect(
        payload.isdigit() and int(payload) in given_back,
        f"a worker listening on wake_channel('{NAME}', '{VERSION}') was woken, with job {payload} as payload",
        f"a worker listening on wake_channel('{NAME}', '{VERSION}') heard {payload!r}: the payload is the id "
        f"of a job given back ({given_back}), as {wake} sends",
    )


def _claimed_again(conn: psycopg.Connection, ids: list[int], verdict: Verdict) -> bool:
    """Check 1, its end: another worker's find_job takes the jobs given back."""
    taker = _worker()
    params = {"uuid": taker.uuid, "server": taker.server, "name": NAME, "version": VERSION}
    try:
        answer = conn.execute(_calls()["find_job"], {**params, "multi": False, "batch": 10}).fetchone()[0]
    except psycopg.Error as exc:
        return verdict.expect(
            False,
            "",
            f"worker {taker.uuid} asked for the jobs given back, and its find_job failed: {_said(exc)}",
        )
    jobs = json.loads(answer) if answer.startswith("[") else []
    got = sorted(job["job_id"] for job in jobs)
    return verdict.expect(
        got == ids and all(job["job_attempts"] == 2 for job in jobs),
        f"worker {taker.uuid}'s find_job then claimed jobs {ids}, each on its second attempt",
        f"worker {taker.uuid} asked for up to 10 jobs of {NAME} {VERSION} and got {got or answer!r}, "
        f"while jobs {ids} were given back, each after one attempt",
    )


def _out_of_attempts(conn: psycopg.Connection, scene: Scene, verdict: Verdict) -> bool:
    """Check 5: the job of a silent worker on its last attempt is dead-lettered, not given back."""
    conn.execute(_lesson()["age_heartbeat"], {"uuid": scene.dying.uuid, "seconds": SILENT})
    job_id = scene.dying_job
    if _rescue(conn, verdict, f"with worker {scene.dying.uuid}, holding job {job_id}, silent") is None:
        return False
    job = _job(conn, job_id)
    used = f"job {job_id} had used {job.attempts} of its {MAX_ATTEMPTS} attempts (max_attempts)"
    if job.holder:
        return verdict.expect(
            False,
            "",
            f"{used} and is still leased to worker {scene.dying.uuid}, silent for {SILENT} s: "
            "a silent worker's jobs are given back or, out of attempts, dead-lettered",
        )
    if not job.dead:
        return verdict.expect(
            False,
            "",
            f"{used} when worker {scene.dying.uuid} went silent, yet it went back to the queue: a job out of "
            "attempts is dead-lettered (job_dead_timestamp and job_error set), or a job that kills every "
            "worker that runs it kills them all",
        )
    if not job.error:
        return verdict.expect(
            False,
            "",
            f"{used} and was dead-lettered without a job_error: say why (its worker went silent in each "
            "attempt)",
        )
    fault = _attempt_fault(job, scene.dying, "was dead-lettered")
    if fault:
        return verdict.expect(False, "", fault)
    return verdict.expect(
        True, f"{used} when its worker went silent: it was dead-lettered with the error {job.error!r}", ""
    )


def _late_finish(lab: labs.Scratch, conn: psycopg.Connection, scene: Scene, verdict: Verdict) -> bool:
    """Check 4, a forced schedule: a silent worker's late finish holds its job's row in an open transaction.

    The worker went silent, then finished its job after all (create_jobs, as its hand-over to the
    next step); while that transaction is open a rescuer runs, allowed to wait 2 s for a lock.
    A rescue that locks with SKIP LOCKED passes over the row; one that waits gives up after 2 s.
    """
    who, job_id = scene.late, scene.late_job
    conn.execute(_lesson()["age_heartbeat"], {"uuid": who.uuid, "seconds": SILENT})
    waited: float | None = None
    failed: str | None = None
    with lab.connect() as finisher, lab.connect() as rescuer:
        rescuer.execute(queries.load("clients/races.sql")["lock_timeout"], {"ms": str(LOCK_TIMEOUT * 1000)})
        with finisher.transaction():
            params = {"uuid": who.uuid, "job_ids": [job_id], "payloads": Jsonb([{}])}
            finisher.execute(_calls()["create_jobs"], params)
            started = time.monotonic()
            try:
                rescuer.execute(_q()["rescue"])
            except psycopg.errors.LockNotAvailable:
                waited = time.monotonic() - started
            except psycopg.Error as exc:
                failed = _said(exc)
            during = _job(conn, job_id)
    holding = f"while worker {who.uuid}'s late finish of job {job_id} held its row in an open transaction"
    if failed is not None:
        return verdict.expect(False, "", f"{holding}, your rescue_jobs failed: {failed}")
    if not verdict.expect(
        waited is None,
        f"{holding}, your rescue_jobs passed over it without waiting (lock_timeout {LOCK_TIMEOUT} s)",
        f"{holding}, your rescue_jobs waited {waited or 0:.1f} s for the lock on job {job_id} and gave up "
        f"(lock_timeout {LOCK_TIMEOUT} s): FOR UPDATE SKIP LOCKED passes over a row that its worker is "
        "finishing; every find_job calls rescue_jobs, so every worker would wait",
    ):
        return False
    if during.holder != who.uuid:
        return verdict.expect(
            False,
            "",
            f"{holding}, your rescue_jobs took it (held by {during.holder or 'nobody'}): a job its worker "
            "is finishing right now is not lost",
        )
    after = _job(conn, job_id)
    return verdict.expect(
        after.finished and after.tried_by == who.uuid and after.outcome == "succeeded" and not after.running,
        f"once the late finish committed, job {job_id} was finished, worker {who.uuid}'s attempt 'succeeded'",
        f"once the late finish committed, job {job_id} is {'finished' if after.finished else 'unfinished'} "
        f"with its last attempt {after.outcome!r} by {after.tried_by}: it should be finished, its attempt "
        "'succeeded'",
    )


def _said(exc: psycopg.Error) -> str:
    return exc.diag.message_primary or str(exc)
