"""Lesson 12's checker: the learner's hold_jobs, driven through create_jobs and finish_pipe as workers do."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import psycopg

from pgqueue import queries
from pgqueue.check.callers import Said, client, finish, hand_over, waits, wrong
from pgqueue.check.core import Call, Refused, Verdict, checker, holding, said
from pgqueue.check.hold_scene import (
    BAD_INPUT,
    DEADLOCK,
    FIRST,
    LOCK_TIMEOUT_MS,
    NEXT_ORDER,
    NO_JOB,
    PLAIN,
    POC,
    RESCUE_AFTER,
    ROUTINE,
    SECOND,
    SILENT_FOR,
    THIRD,
    WAIT,
    Scene,
    changed_tables,
    hold_queries,
    lesson_queries,
    refusal,
    refused_alone,
    unchanged,
)
from pgqueue.lab import races
from pgqueue.queues import labs
from pgqueue.queues.client import NoJob
from pgqueue.queues.heartbeats import Identity
from pgqueue.wait import Timeout, until


@checker("your hold_jobs", POC, examples=True, replaces=[ROUTINE])
def hold_jobs(verdict: Verdict, lab: labs.Scratch, conn: psycopg.Connection, text: str, poc: str) -> None:
    """Whether the learner's hold_jobs lets the holder hand over, once, and refuses everybody else.

    It replaces the reference on a scratch copy of the hardened lab with its examples; the real
    create_jobs and finish_pipe then call it as workers do: a hand-over (of a drawn size) and its
    repeat, a stranger, a job rescued from a silent worker (taken over by another, or by nobody
    yet), a repeat of which only part was handed over before, an unknown job, jobs of two pipe
    jobs, and two forced schedules on several connections (a repeat sent while the first call is
    open, and one batch finished in two orders at once).
    """
    conn.execute(lesson_queries()["rescue_after"], {"seconds": RESCUE_AFTER})
    scene = Scene(lab, conn)
    for check in (_one_pipe_job_through, _given_back_not_taken, _partial_repeat, _bad_input):
        check(scene, verdict)
    _repeat_while_open(scene, verdict)
    _one_batch_in_two_orders(scene, verdict)
    _rescue_during_the_hand_over(scene, verdict)
    _repeat_after_a_retry(scene, verdict)  # last: it turns the backoff off


# --- checks 1 to 4: one pipe job through its pipeline ------------------------------------------


def _one_pipe_job_through(scene: Scene, verdict: Verdict) -> None:
    """A request's pipe job of pipeline 2, step by step: the holder's hand-over and its repeat,
    a stranger, then a job rescued from a silent worker and finished by its new holder."""
    pipe_job, next_order = scene.request(PLAIN, NEXT_ORDER)
    holder, (first,) = scene.claim(FIRST, [pipe_job])
    fan_out = scene.rng.randint(1, 4)  # how many jobs the hand-over makes: a repeat must return them all
    made = list(scene.handed(holder, [first], FIRST, jobs=fan_out).made or ())
    second = scene.step_jobs(pipe_job, SECOND)
    if made != second or len(made) != fan_out or not scene.job(first)["finished"]:
        raise Refused(
            f"worker {holder} held job {first} ({FIRST[0]}); its create_jobs returned {made}, pipe job "
            f"{pipe_job} now has {SECOND[0]} jobs {second}, and job {first} is "
            f"{'finished' if scene.job(first)['finished'] else 'not finished'}: expected {fan_out} new "
            f"job(s), returned, and job {first} finished"
        )
    verdict.held.append(
        f"worker {holder} held job {first} ({FIRST[0]}): its create_jobs finished it and made jobs {made} "
        f"for {SECOND[0]}"
    )
    _repeat_create(scene, verdict, holder, first, made, pipe_job)

    worker, (job,) = scene.claim(SECOND, [pipe_job])
    stranger = secrets.token_hex(6)  # check 3: a worker that does not hold the job
    refused_alone(
        scene,
        verdict,
        lambda: scene.create(stranger, [job]),
        f"worker {stranger}, which never held job {job} (worker {worker} holds it), called create_jobs",
        "only the worker that holds a job may hand it over",
        "the stranger's refused create_jobs changed no table",
    )
    scene.handed(worker, [job], SECOND)
    _rescued_and_run_twice(scene, verdict, pipe_job, next_order)


def _repeat_create(
    scene: Scene, verdict: Verdict, holder: str, job: int, made: list[int], pipe_job: int, how: str = ""
) -> None:
    """Check 2: the same create_jobs again (a repeat after a lost connection) changes nothing."""
    before = scene.tables()
    again = scene.create(holder, [job])
    what = f"create_jobs sent again by worker {holder} for job {job}, which it had just handed over{how}"
    if not again.ok:
        wrong(
            verdict,
            f"{what}, was {again}: a repeat after a lost connection must be a no-op (hold_jobs returns "
            "false when every job was finished before by this same worker)",
        )
        return
    now = scene.step_jobs(pipe_job, SECOND)
    if verdict.expect(
        list(again.made or ()) == made and now == made,
        f"{what}, answered without error and returned the same jobs {made}",
        f"{what}, returned {list(again.made or ())} and pipe job {pipe_job} now has {SECOND[0]} jobs "
        f"{now}: the repeat must make no new job and return jobs {made}, made the first time "
        "(hold_jobs returns false for a repeat)",
    ):
        unchanged(verdict, scene, before, what, f"{what}, changed no table", "repeated")


def _rescue_during_the_hand_over(scene: Scene, verdict: Verdict) -> None:
    """A forced schedule: a silent worker hands its job over late, and a rescue runs in between.

    The kit's hold stops the hand-over once hold_jobs said the job is the worker's, before anything
    else of create_jobs locks it (at finish_jobs' UPDATE of job_queue, before it changes a row); the
    kit's rescue_jobs runs meanwhile. A hold_jobs that locks the job's row keeps it from the rescue
    (which passes over locked rows) until the hand-over commits.
    """
    (pipe_job,) = scene.request(PLAIN)
    holder, (job,) = scene.claim(FIRST, [pipe_job])
    scene.silence(holder)  # it looks dead, and hands over late
    rescue = queries.load("clients/check_rescue_jobs.sql")["rescue"]
    freed: object = None
    stop: str | None = None
    with (
        scene.lab.connect() as watch,
        holding(
            watch, "job_queue", when="BEFORE", event="UPDATE", level="STATEMENT", inside="finish_jobs"
        ) as hold,
        scene.connect() as worker,
        scene.connect() as rescuer,
    ):
        hold.arm(worker, 1)
        hold.close(1)
        handing = Call(lambda: hand_over(worker, holder, [job]))
        try:
            stop = hold.stops(worker, handing)
            if stop == "held":
                try:
                    freed = rescuer.execute(rescue).fetchone()[0]
                except psycopg.Error as exc:
                    freed = exc
        except Timeout as exc:
            stop = f"never reached: {exc}"
        finally:
            hold.open_all()
            handed = handing.join()
    if stop and stop.startswith("never reached"):
        return verdict.refuse(
            f"worker {holder}'s late create_jobs of job {job} neither answered nor stopped: {stop}"
        )
    if stop != "held":
        return  # refused or answered before it made a job: the checks before judged it
    what = (
        f"worker {holder}, silent, handed job {job} over late; held inside its create_jobs once your "
        "hold_jobs had said the job is its, while the kit's rescue_jobs ran"
    )
    outcomes = scene.outcomes(job)
    if isinstance(freed, BaseException):
        return verdict.refuse(f"{what}: the rescue failed ({said(freed)})")
    verdict.expect(
        "rescued" not in outcomes and handed.ok,
        f"{what}: the rescue passed the job over (it freed {freed}), and the hand-over finished it",
        f"{what}: the rescue took the job from under the hand-over (its attempts: "
        f"{', '.join(map(str, outcomes))}; the hand-over was {handed}): hold_jobs must lock the jobs' rows "
        "(FOR UPDATE) until the hand-over commits, so that a rescue, which passes over locked rows, leaves "
        "them to it",
    )


def _repeat_after_a_retry(scene: Scene, verdict: Verdict) -> None:
    """A worker fails its job (fail_jobs), claims it again, hands it over, then repeats the hand-over:
    the job has two attempts of that worker, one failed and one succeeded, and the repeat is a no-op."""
    (pipe_job,) = scene.request(PLAIN)
    who, calls = Identity.new(*FIRST), client(scene.conn)
    scene.conn.execute(lesson_queries()["retries"], {"max_attempts": 3, "base": 0})  # due again at once
    try:
        (job,) = (j["job_id"] for j in calls.claim(who))
        calls.fail(who, [job], "the checker's failure")
        again = [j["job_id"] for j in calls.claim(who)]
    except (psycopg.Error, NoJob, ValueError) as exc:
        raise Refused(
            f"worker {who.uuid} claimed a job of pipe job {pipe_job}, failed it and claimed again: {exc}"
        ) from exc
    if again != [job]:
        raise Refused(f"worker {who.uuid} failed job {job} and claimed again, and was handed {again}")
    made = list(scene.handed(who.uuid, [job], FIRST).made or ())
    how = " on its second attempt (its first, by the same worker, had failed)"
    _repeat_create(scene, verdict, who.uuid, job, made, pipe_job, how)


def _rescued_and_run_twice(scene: Scene, verdict: Verdict, pipe_job: int, next_order: int) -> None:
    """Check 4: worker A goes silent, B's find_job rescues A's job and takes it; A's late finish is
    refused, B's finishes the pipe job, and the job ends with exactly one succeeded attempt."""
    (job,) = scene.step_jobs(pipe_job, THIRD)
    silent, _ = scene.claim(THIRD, [pipe_job])
    scene.silence(silent)
    rescuer, _ = scene.claim(THIRD, [pipe_job])  # its find_job rescues the job first
    if scene.job(job)["holder"] != rescuer or scene.outcomes(job) != ["rescued", None]:
        raise Refused(
            f"job {job} was not rescued from silent worker {silent}: attempts {scene.outcomes(job)}"
        )
    who = f"worker {silent}, silent for {SILENT_FOR:.0f} s"
    refused_alone(
        scene,
        verdict,
        lambda: scene.finish(silent, [job], pipe_job),
        f"{who}, sent finish_pipe for job {job} after worker {rescuer} was handed it",
        "a job rescued from its worker is no longer that worker's",
        "the silent worker's refused finish_pipe changed no table",
    )
    said = scene.finish(rescuer, [job], pipe_job)
    if not verdict.expect(
        said.ok and scene.finished(pipe_job),
        f"worker {rescuer}, which took job {job} over, finished it with finish_pipe, and pipe job {pipe_job} "
        "with it",
        f"worker {rescuer}, which holds job {job} now, sent finish_pipe and it was {said}; pipe job "
        f"{pipe_job} is {'finished' if scene.finished(pipe_job) else 'not finished'}",
    ):
        return
    entries, outcomes = scene.entry_jobs(next_order), scene.outcomes(job)
    verdict.expect(
        entries == 1,
        f"the request's order-2 pipe job {next_order} started once",
        f"the request's order-2 pipe job {next_order} got {entries} entry jobs instead of 1",
    )
    verdict.expect(
        outcomes.count("succeeded") == 1,
        f"job {job} ran twice and has exactly one succeeded attempt (attempts: {', '.join(outcomes)})",
        f"job {job} ran twice and its attempts are {outcomes}: exactly one must have succeeded",
    )
    refused_alone(
        scene,
        verdict,
        lambda: scene.finish(silent, [job], pipe_job),
        f"{who}, sent finish_pipe for job {job} once worker {rescuer} had finished it",
        "another worker finished that job: this is no repeat",
        "that refused finish_pipe changed no table",
    )
    before = scene.tables()
    again = scene.finish(rescuer, [job], pipe_job)
    what = f"finish_pipe sent again by worker {rescuer} for job {job}"
    if verdict.expect(
        again.ok,
        f"{what} answered without error",
        f"{what}, which it had just finished, was {again}: a repeat after a lost connection must be a no-op",
    ):
        unchanged(verdict, scene, before, what, f"{what} changed no table", "repeated")


def _given_back_not_taken(scene: Scene, verdict: Verdict) -> None:
    """Check 4b: a job rescued from its silent worker and not claimed since is nobody's: the silent
    worker's late hand-over is refused (55000), and nothing changes."""
    (pipe_job,) = scene.request(PLAIN)
    silent, (job,) = scene.claim(FIRST, [pipe_job])
    scene.silence(silent)
    scene.conn.execute(hold_queries()["rescue"])
    if scene.job(job)["holder"] is not None:
        raise Refused(f"the kit's rescue_jobs did not give back job {job} of silent worker {silent}")
    refused_alone(
        scene,
        verdict,
        lambda: scene.create(silent, [job]),
        f"worker {silent}, silent for {SILENT_FOR:.0f} s, called create_jobs for job {job}, which nobody "
        "holds since it was rescued from it",
        "a job given back is no longer its old worker's (job_assigned_process_uuid is NULL now, and "
        "NULL <> p_uuid is not true but NULL: compare with IS DISTINCT FROM)",
        "that refused create_jobs changed no table",
    )


def _partial_repeat(scene: Scene, verdict: Verdict) -> None:
    """Check 4c: a worker holding two jobs hands over one alone, then both at once: refused (55000),
    since only one of them was handed over before; nothing changes."""
    _, holder, a, b = scene.batch_of_two()
    said = scene.create(holder, [a])
    if not said.ok:
        raise Refused(
            f"worker {holder} held jobs {a} and {b}, yet its create_jobs of job {a} alone was {said}"
        )
    refused_alone(
        scene,
        verdict,
        lambda: scene.create(holder, [a, b]),
        f"worker {holder}, holding jobs {a} and {b}, handed over job {a} alone, then called create_jobs for "
        f"[{a}, {b}]",
        "only some of them were handed over before: a repeat is a no-op only when this worker finished "
        f"every one of them, and job {b} was never handed over",
        "that refused create_jobs changed no table",
    )


# --- check 5: ids that cannot be handed over --------------------------------------------------


def _bad_input(scene: Scene, verdict: Verdict) -> None:
    """An unknown job is refused (P0002); jobs of two pipe jobs in one call are refused (22023)."""
    unknown = scene.conn.execute(hold_queries()["no_such_job"]).fetchone()[0]
    said = scene.create(secrets.token_hex(6), [unknown])
    what = f"create_jobs was called for job {unknown}, which does not exist"
    refusal(verdict, said, NO_JOB, what, "a job nobody made must be named as missing")
    one = scene.request(PLAIN)
    other = scene.request(PLAIN)
    holder, jobs = scene.claim(FIRST, one + other, batch=2)
    refused_alone(
        scene,
        verdict,
        lambda: scene.create(holder, jobs),
        f"worker {holder}, holding jobs {jobs} of pipe jobs {one[0]} and {other[0]}, called create_jobs",
        "one hand-over belongs to one pipe job",
        "that refused create_jobs changed no table",
        BAD_INPUT,
    )


# --- check 6: forced schedules on several connections ------------------------------------------


@dataclass
class _Race:
    """A call made on connection A in a transaction kept open, and the same call on B meanwhile."""

    first: Said
    second: Said | None = None
    waited: bool = False
    after_first: dict | None = None  # every table as A's transaction left it
    after_second: dict | None = None  # every table once B had answered


def _race(scene: Scene, call) -> _Race:
    """Force one schedule: `call(A)` in a transaction kept open, then `call(B)` on a second
    connection; wait (with a deadline) until B waits for a lock or answers; then A commits."""
    with scene.connect() as a, scene.connect() as b:
        with a.transaction() as tx:
            race = _Race(call(a))
            if not race.first.ok:
                raise psycopg.Rollback(tx)
            race.after_first = scene.tables(a)  # A sees its own work, not yet committed
            second = Call(lambda: call(b))
            try:
                race.waited = waits(
                    second, b, scene.conn, WAIT, "the second call answering or waiting for a lock"
                )
            except Timeout as exc:
                raise Refused(f"the checker's forced schedule stalled: {exc}") from None
        if race.first.ok:
            answer = second.join(WAIT)
            race.second = answer if isinstance(answer, Said) else Said(None, "?", "it never answered")
            race.after_second = scene.tables()
    return race


def _wait(condition, what: str) -> None:
    """Wait for a state a forced schedule needs; if it never comes, the checks stop and say so."""
    try:
        until(condition, WAIT, what)
    except Timeout as exc:
        raise Refused(f"the checker's forced schedule stalled: {exc}") from None


def _repeat_while_open(scene: Scene, verdict: Verdict) -> None:
    """The holder's call kept open in a transaction while the same call comes on a second
    connection: the second must wait for the first, then change nothing."""
    (pipe_job,) = scene.request(PLAIN)
    holder, jobs = scene.claim(FIRST, [pipe_job])
    race = _race(scene, lambda conn: hand_over(conn, holder, jobs))
    what = f"while worker {holder}'s create_jobs of job {jobs[0]} was open in a transaction, the same call"
    made = scene.step_jobs(pipe_job, SECOND)
    outcome = f"pipe job {pipe_job} has {len(made)} {SECOND[0]} job(s) {made}"
    if _judge(verdict, race, what, outcome, len(made)):
        returned = list(race.second.made or ()) if race.second else None
        verdict.expect(
            returned == made,
            f"the second create_jobs returned job {made[0]}, made by the first",
            f"the second create_jobs returned {returned}, not job {made[0]} made by the first",
        )

    pipe_job, next_order = scene.request(PLAIN, NEXT_ORDER)
    for step in (FIRST, SECOND):
        worker, jobs = scene.claim(step, [pipe_job])
        scene.handed(worker, jobs, step)
    holder, jobs = scene.claim(THIRD, [pipe_job])
    race = _race(scene, lambda conn: finish(conn, holder, jobs, pipe_job))
    what = f"while worker {holder}'s finish_pipe of job {jobs[0]} was open in a transaction, the same call"
    entries = scene.entry_jobs(next_order)
    outcome = f"the request's order-2 pipe job {next_order} got {entries} entry job(s)"
    _judge(verdict, race, what, outcome, entries)


def _judge(verdict: Verdict, race: _Race, what: str, outcome: str, count: int) -> bool:
    """Say how a forced repeat went: the second waited, answered, made nothing, changed nothing."""
    if not race.first.ok:
        raise Refused(f"{what.removeprefix('while ').split(' was open')[0]} was {race.first}")
    if not verdict.expect(
        race.waited,
        f"{what} on a second connection waited for its lock",
        f"{what} on a second connection did not wait: it was {race.second}; lock the jobs (SELECT ... "
        "FOR UPDATE) so that a second finisher waits for the first",
    ):
        return False
    if not verdict.expect(
        race.second is not None and race.second.ok,
        "once the first committed, the second answered without error",
        f"once the first committed, the second was {race.second}: a repeat must be a no-op",
    ):
        return False
    if not verdict.expect(
        count == 1,
        f"{outcome}, made once",
        f"{outcome}, not 1: the second call, let go once the first committed, did the work again; lock "
        "the jobs (SELECT ... FOR UPDATE) before deciding whether they were finished, so that the second "
        "reads them finished, and return false when this worker finished every one of them",
    ):
        return False
    changed = changed_tables(race.after_first or {}, race.after_second or {})
    return verdict.expect(
        not changed,
        "the second call changed no table",
        f"the second call changed {changed} after the first had committed: a repeat must change nothing",
    )


def _one_batch_in_two_orders(scene: Scene, verdict: Verdict) -> None:
    """A batch holder's create_jobs of jobs [a, b] on one connection and [b, a] on another.

    Forced: the checker holds a lock on a and another on b (two transactions), starts the two
    finishers, waits until both wait for a lock, lets a go, waits until nobody waits for a any
    more, then lets b go. A finisher that locks in the order it was given then holds a and wants
    b while the other holds b and wants a: a deadlock, every time. Locked in id order, both want
    a first, and the second waits behind the first.
    """
    pipe_job, holder, a, b = scene.batch_of_two()
    orders = ([a, b], [b, a])
    finishers = [scene.connect(), scene.connect()]
    pids = [c.info.backend_pid for c in finishers]
    calls: list[Call] = []

    def waiting(not_for: int | None = None) -> bool:
        """Each finisher answered, or waits for a lock (held by someone other than `not_for`)."""
        for pid, call in zip(pids, calls, strict=True):
            if call.done:
                continue
            if not races.waiting_on_lock(pid, conn=scene.conn):
                return False
            blockers = scene.blockers(pid)
            if not_for is not None and (not blockers or not_for in blockers):
                return False
        return True

    first_b = False
    try:
        with scene.lab.connect() as hold_a, scene.lab.connect() as hold_b, hold_b.transaction():
            hold_b.execute(hold_queries()["lock_job"], {"job_id": b})
            with hold_a.transaction():
                hold_a.execute(hold_queries()["lock_job"], {"job_id": a})
                calls += [
                    Call(lambda c=c, o=o: hand_over(c, holder, o))
                    for c, o in zip(finishers, orders, strict=True)
                ]
                _wait(waiting, "both finishers waiting for a lock")
                # which job each waits for first: in id order both wait for a; in the order given,
                # the finisher that named b first waits for b
                first_b = any(
                    not call.done and hold_b.info.backend_pid in scene.blockers(pid)
                    for pid, call in zip(pids, calls, strict=True)
                )
            # a is free: each finisher goes on until it waits for b, or for the other finisher
            _wait(lambda: waiting(not_for=hold_a.info.backend_pid), f"no finisher waiting for job {a}")
    finally:
        for call in calls:  # the checker's locks are gone: each finisher answers, at worst on timeout
            call.join(WAIT + int(LOCK_TIMEOUT_MS) / 1000)
        for c in finishers:
            c.close()
    what = (
        f"worker {holder}, holding jobs {a} and {b}, sent create_jobs of {orders[0]} on one connection and "
        f"of {orders[1]} on another at once (the checker held both jobs' locks, then let them go one by one)"
    )
    if not all(call.done for call in calls):
        raise Refused(f"{what}: they never both answered")
    answers = [c.result if isinstance(c.result, Said) else Said(None, "?", str(c.result)) for c in calls]
    deadlocked = [s for s in answers if s.code == DEADLOCK]
    if deadlocked and first_b:
        wrong(
            verdict,
            f"{what}: a deadlock ({deadlocked[0].words}): each held the job it named first and waited for "
            "the other's; lock the jobs in id order (ORDER BY job_id ... FOR UPDATE), whatever order the "
            "caller names them in",
        )
        return
    if deadlocked:
        wrong(
            verdict,
            f"{what}: a deadlock ({deadlocked[0].words}), though both waited for job {a} first (id order): "
            "each kept a shared lock on both jobs (FOR SHARE lets two callers hold one row), then each "
            "waited for the other's to finish them; FOR UPDATE lets one finisher alone hold a job, and the "
            "other waits",
        )
        return
    failed = [s for s in answers if not s.ok]
    if not verdict.expect(
        not failed,
        f"{what}: no deadlock, and neither was refused",
        f"{what}: one was {failed[0] if failed else ''}",
    ):
        return
    made = scene.step_jobs(pipe_job, THIRD)
    returned = sorted(list(m) for m in {s.made for s in answers})
    verdict.expect(
        len(made) == 1 and returned == [made],
        f"one of them made job {made[0] if made else ''} for {THIRD[0]}, the other waited and returned it",
        f"pipe job {pipe_job} got {THIRD[0]} jobs {made} and the two calls returned {returned}: one "
        "hand-over makes its jobs once, and its repeat returns them",
    )
