"""Lessons 07 and 12: the learner's turn-taking at the order gate, on forced schedules and trials."""

from __future__ import annotations

import contextlib

import psycopg
from psycopg.errors import DeadlockDetected

from pgqueue import wait
from pgqueue.check.callers import waits
from pgqueue.check.core import Call, Verdict, checker, holding, said
from pgqueue.check.gate_scene import (
    HOLD_OPEN,
    ORDER_1,
    ORDER_2,
    ORDER_3_SCENE,
    Forced,
    Lock,
    Scene,
    finish_of,
    gate_queries,
    held_open,
    held_open_beside,
    locks_of,
    race_queries,
)
from pgqueue.lab import races
from pgqueue.queues import labs

TRIALS = 50  # trials of two finishers released together
ABOVE = 40  # requests 1 to ABOVE above a held one, whose finishers must not wait for its finisher
STOP_AFTER = 2  # trials with a deadlock or an error before the trials stop (each costs a second or more)
# Then trials where each finisher is held right after its UPDATE locked its own row, and both
# are let go together: every trial meets the schedule that free trials meet only now and then.
# A fix that deadlocks in 1 of 50 free trials deadlocks in these every time.
HELD_TRIALS = 10
ROUTINE = "pipe_job_takes_turn"
GATE_TRIAL = {"pipe": 2, "next_pipe": ORDER_2}  # each trial: two pipe jobs of pipeline 2, one of 4


def _prepare(conn: psycopg.Connection) -> None:
    conn.execute(gate_queries()["gate_lock_timeout"])
    conn.execute(gate_queries()["gate_drop_trigger"])  # the hardened lab's own goes first


@checker("your gate fix", "single-call", "order_gating", examples=True, replaces=[ROUTINE], before=_prepare)
def gate_takes_turns(
    verdict: Verdict, lab: labs.Scratch, conn: psycopg.Connection, text: str, poc: str, trials: int = TRIALS
) -> None:
    """Whether the learner's trigger makes the order gate open exactly once, whatever the schedule.

    On a scratch lab built up to order_gating with its examples, the original gate (the hardened
    lab's own turn-taking trigger dropped first): a finish one after the other; forced
    schedules, each with one transaction held open while another runs: two pipe jobs of one
    pipeline, two pipelines of one request, two requests (which must not wait for each other),
    and on the hardened lab an order-2 pipe job inserted while order 1 finishes; then `trials`
    requests whose two finishers are released together, and trials holding both after their
    row lock. Request ids are drawn at random. Where a finisher did not wait, the advisory locks
    each side held (pg_locks) and those an insert takes say why: keys that differ, a shared lock,
    a try-lock that gave up, or a lock taken on INSERT only.
    """

    def connect() -> psycopg.Connection:
        conn = lab.connect()
        conn.execute(gate_queries()["gate_lock_timeout"])
        return conn

    scene = Scene(conn)
    steps = [_one_after_the_other, _one_pipeline, _two_pipelines, _two_requests, _order_2]
    if poc == "hardened":
        steps.append(_late_insert)
    if not all(step(scene, connect, verdict) for step in steps):
        return
    free = races.order_gate_trials(trials, connect=connect, stop_after=STOP_AFTER)
    if _judge(free, verdict, trials, "trials of two finishers released together"):
        what = "trials where both finishers held their own row's lock before your trigger ran"
        _judge(held_trials(HELD_TRIALS, connect), verdict, HELD_TRIALS, what)


def held_trials(trials: int, connect: races.Connect, stop_after: int | None = STOP_AFTER) -> races.GateTrials:
    """`trials` requests whose two order-1 finishers the kit's hold (core.Hold) stops right after their
    UPDATE locked their own row, before any later BEFORE trigger runs, and lets go once both stopped.

    Every trial meets the schedule that free trials meet only now and then: both finishers holding
    their own row before either asks for more. The trials stop once `stop_after` of them had a
    deadlock or another error (each deadlock costs a second or more).
    """
    started = stalled = twice = ran = 0
    victims: set[int] = set()  # trials where a finisher was a deadlock victim
    failed: set[int] = set()  # trials where a finisher failed otherwise
    error = ""  # the first such error, in PostgreSQL's words
    with contextlib.ExitStack() as stack:
        watch, *finishers = (stack.enter_context(connect()) for _ in range(3))
        hold = stack.enter_context(holding(watch, "pipe_job_queue", when="BEFORE", event="UPDATE"))
        for slot, finisher in enumerate(finishers, 1):
            hold.arm(finisher, slot)
        for trial in range(trials):
            gated, *pipe_jobs = [row[0] for row in watch.execute(race_queries()["gate_trial"], GATE_TRIAL)]
            calls = []
            for slot, (finisher, pipe_job) in enumerate(zip(finishers, pipe_jobs, strict=True), 1):
                hold.close(slot)
                calls.append(Call(lambda f=finisher, p=pipe_job: f.execute(*finish_of(p))))
            for finisher, call in zip(finishers, calls, strict=True):
                hold.stops(finisher, call, 30)
            hold.open_all()
            for result in (call.join(30) for call in calls):
                if isinstance(result, DeadlockDetected):
                    victims.add(trial)
                elif isinstance(result, BaseException):
                    failed.add(trial)
                    error = error or said(result)
            ran += 1
            entries = watch.execute(race_queries()["entry_job_of"], {"pipe_job_id": gated}).fetchone()[0]
            started += entries == 1
            twice += entries > 1
            stalled += entries == 0 and trial not in victims | failed
            if stop_after is not None and len(victims | failed) >= stop_after:
                break
    return races.GateTrials(ran, started, stalled, len(victims), twice, len(failed), error)


def _one_after_the_other(scene: Scene, connect: races.Connect, verdict: Verdict) -> bool:
    """Two finishes in turn, each committed: each ends finished, leaves no lock, and the gate opens once."""
    conn = scene.conn
    request, (report, one, two) = scene.request([ORDER_2, *ORDER_1])
    for pipe_job in (one, two):
        try:
            conn.execute(*finish_of(pipe_job))
        except psycopg.Error as exc:
            verdict.refuse(f"finishing pipe job {pipe_job} of request {request} failed: {said(exc)}")
            return False
        left = conn.execute(gate_queries()["gate_advisory_locks_held"]).fetchone()[0]
        if left:
            verdict.refuse(
                f"after the finish of pipe job {pipe_job} (request {request}) had committed, its session "
                f"still held {left} advisory lock{'s' if left > 1 else ''}: a session-level lock "
                "(pg_advisory_lock) outlives the transaction, so the next finisher of that request waits "
                "for this session to unlock it or end, not for the commit; take pg_advisory_xact_lock, "
                "which the commit releases"
            )
            return False
    unfinished = [
        p
        for p in (one, two)
        if not conn.execute(gate_queries()["gate_pipe_job_finished"], {"id": p}).fetchone()[0]
    ]
    if not verdict.expect(
        not unfinished,
        "an UPDATE that finishes a pipe job still finishes it, and leaves no lock behind once committed",
        f"after UPDATE ... SET pipe_job_finished = true, pipe job {unfinished[0] if unfinished else ''} "
        "is still unfinished: a BEFORE trigger must RETURN NEW (RETURN NULL skips the row)",
    ):
        return False
    entries = scene.entries(report)
    return verdict.expect(
        entries == 1,
        "finished one after the other, two pipe jobs of one request open the gate once",
        f"finished one after the other, pipe jobs {one} and {two} of request {request} gave order-2 pipe "
        f"job {report} {entries} entry jobs instead of 1",
    )


def _forced_finishes(
    scene: Scene, connect, pipes: list[int], no_wait: str, lead: str = ""
) -> tuple[bool, str]:
    """A request of `pipes` (order 1) and of pipeline 4 (order 2), its first order-1 finisher held open
    while the second finishes: whether the gate then opened once, and what went wrong or how it waited.

    `no_wait` is the cause named when the second finished without waiting for the first and the
    locks they took say nothing more; `lead` goes before any cause of that kind.
    """
    request, (report, one, two) = scene.request([ORDER_2, *pipes])
    race = held_open(connect, finish_of(one), finish_of(two))
    while_open = (
        f"while the finisher of pipe job {one} (pipeline {pipes[0]}, request {request}) had not committed, "
        f"the finisher of pipe job {two} (pipeline {pipes[1]})"
    )
    if race.error:
        return False, f"{while_open} failed: {race.error}{_hint(race.error)}"
    started = scene.entries(report)
    fate = "never started" if started == 0 else f"started {started} times"
    if not race.waited:
        named = (
            {one: f"pipe job {one}'s id", pipes[0]: f"pipeline {pipes[0]}'s id"},
            {two: f"pipe job {two}'s id", pipes[1]: f"pipeline {pipes[1]}'s id"},
        )
        cause = _no_turn(scene, connect, race, named) or no_wait
        return (
            False,
            f"{while_open} {_went_on(race)}, and order-2 pipe job {report} {fate}: {lead}{cause}",
        )
    if started != 1:
        return (
            False,
            f"{while_open} waited, yet order-2 pipe job {report} {fate}: {_after_the_gate(scene.conn)}",
        )
    # a try-lock loop waits for no lock, as a long sleep does: say only what was seen
    return True, "waited for its lock" if race.locked else f"did not end in the {HOLD_OPEN:g} s it was open"


def _went_on(race: Forced) -> str:
    """How the second finisher ended while the first was open: it never waited, or stopped waiting."""
    return "stopped waiting and finished" if race.locked else "finished without waiting"


def _no_turn(scene: Scene, connect, race: Forced, named: tuple[dict[int, str], dict[int, str]]) -> str:
    """Why the second finisher did not wait for the first, from the advisory locks each took; '' if
    they say nothing (no lock on either side once its statement had run, none on an insert either,
    and none a finish waits for when the checker holds the request's likely keys).

    `named` says, for each finisher, what a value of its key would be (its pipe job's id, say).
    """
    mine, theirs = race.first_locks, race.second_locks
    if not mine and not theirs:
        return _insert_only(scene) or _let_go_early(scene, connect)
    if not mine:
        return ""
    if not theirs and race.locked:
        return (
            f"the first held {mine[0]}; the second waited for it, then went on without it while the first "
            "was still open (a lock_timeout or NOWAIT error caught?): a turn is taken only by waiting until "
            "the first commits; ask with pg_advisory_xact_lock, and let no error handler or timeout end the "
            "wait"
        )
    if not theirs:
        return (
            f"the first held {mine[0]}, but the second took no advisory lock at all, so it had nothing to "
            "wait for (a try-lock that gave up? pg_try_advisory_xact_lock returns false instead of "
            "waiting): ask for the same lock with pg_advisory_xact_lock, which waits for the first's commit"
        )
    both = [lock for lock in mine if lock.key in {other.key for other in theirs}]
    if both:
        return (
            f"both held {both[0]} at once: a shared lock (pg_advisory_xact_lock_shared) lets the other "
            "in too; take it exclusive, pg_advisory_xact_lock"
        )
    first, second = mine[0], theirs[0]
    notes = []
    if len(first.key) == len(second.key):
        for a, b in zip(first.key, second.key, strict=True):
            if a != b:
                notes += [f"{v} is {names[v]}" for v, names in ((a, named[0]), (b, named[1])) if v in names]
    said = f" ({', '.join(notes)})" if notes else ""
    return (
        f"the two finishers of one request locked different keys, the first {first}, the second "
        f"{second}{said}, so neither waited for the other; the lock must be keyed by what must take "
        "turns, and by that alone: the request, NEW.request_id"
    )


def _let_go_early(scene: Scene, connect: races.Connect) -> str:
    """If a finish asks for an advisory lock but holds none once its UPDATE has run: the sentence that
    says so; else ''.

    The checker holds the keys a turn is likely keyed by (the request, the pipe job, the pipeline)
    while a finish runs in a transaction left open: a trigger that asks for one of them waits,
    which pg_locks shows, and once let go, what it still holds before its commit is read.
    """
    request, (pipe_job, _) = scene.request(list(ORDER_1))
    keys = [request, pipe_job, ORDER_1[0]]
    with connect() as holder, connect() as finisher:

        def finish() -> tuple[Lock, ...]:
            with finisher.transaction(force_rollback=True):
                finisher.execute(*finish_of(pipe_job))
                return locks_of(finisher, finisher.info.backend_pid)

        with holder.transaction():
            holder.execute(gate_queries()["gate_hold_keys"], {"keys": keys})
            call = Call(finish)
            with contextlib.suppress(wait.Timeout):
                waits(
                    call,
                    finisher,
                    scene.conn,
                    HOLD_OPEN,
                    "the finish ending or waiting for a lock the checker holds",
                )
            wanted = scene.conn.execute(
                gate_queries()["gate_advisory_lock_wanted"], {"pid": finisher.info.backend_pid}
            )
            wanted = wanted.fetchone()
        # the holder's commit lets the finish go on
        held = call.join(HOLD_OPEN * 5)
    if wanted is None or isinstance(held, BaseException) or held:
        return ""
    lock = Lock(tuple(wanted[0]), wanted[1])
    whose = {
        (request,): "the request's id",
        (pipe_job,): "the pipe job's id",
        (ORDER_1[0],): "the pipeline's id",
    }
    what = f" ({whose[lock.key]})" if lock.key in whose else ""
    return (
        f"then, while the checker held {lock}{what}, a finish of request {request} waited for it, yet once "
        "let go and its UPDATE had run, with its transaction still open, it held no lock: your trigger lets "
        "go of its lock "
        "(pg_advisory_unlock?) before the commit, so the second finisher went on while the first was still "
        "open and both checked the gate before either had committed; take a lock that lasts until the "
        "commit, pg_advisory_xact_lock(NEW.request_id), and no unlock"
    )


def _insert_only(scene: Scene) -> str:
    """If an insert takes the advisory lock a finish did not: the sentence that says so; else ''."""
    probe = scene.insert_locks()
    if probe is None or not probe[2]:
        return ""
    request, pipe_job, locks = probe
    fires = (
        "your trigger fires on INSERT only"
        if not scene.triggers()[2]
        else "your trigger takes its lock on INSERT only (it fires on a finish too, but locks nothing then)"
    )
    return (
        f"neither finish (UPDATE ... SET pipe_job_finished = true) took a lock, yet inserting pipe job "
        f"{pipe_job} (request {request}) took {locks[0]}: {fires}; the gate must also act when a pipe job "
        "is finished (UPDATE OF pipe_job_finished), where two finishers of one request must take turns"
    )


def _one_pipeline(scene: Scene, connect, verdict: Verdict) -> bool:
    """Forced: two pipe jobs of one pipeline of one request; the second waits for the first's commit."""
    pipe = ORDER_1[1]
    calling, _, _, per_statement = scene.triggers()
    if not calling:
        cause = (
            "no trigger calls your pipe_job_takes_turn, so it never runs "
            "(CREATE TRIGGER ... ON pipe_job_queue ... EXECUTE FUNCTION pipe_job_takes_turn())"
        )
    elif per_statement == calling:
        cause = (
            "your trigger fires FOR EACH STATEMENT, where NEW is NULL and no row is known, so it takes no "
            "request's turn: declare it FOR EACH ROW"
        )
    else:
        cause = (
            "your trigger must make the second finisher wait for the first one's commit, not merely delay "
            "it: ask for a lock that lasts until the commit, pg_advisory_xact_lock(NEW.request_id) (a lock "
            "given back before the commit, a shared row lock, a test made before the lock, or one that is "
            "never true of a finish all let the second go on as no lock does)"
        )
    held, said = _forced_finishes(scene, connect, [pipe, pipe], cause)
    return verdict.expect(
        held,
        f"while one finisher's transaction was open, the second finisher of the request {said}, then "
        "opened the gate once it had committed",
        said,
    )


def _two_pipelines(scene: Scene, connect, verdict: Verdict) -> bool:
    """Forced: the order-1 pipe jobs of two pipelines of one request must take turns too."""
    held, said = _forced_finishes(
        scene,
        connect,
        list(ORDER_1),
        "your lock is keyed by something they do not share (the pipeline?): key it by the request, "
        "NEW.request_id",
        lead=f"two pipe jobs of one pipeline took turns, but pipelines {ORDER_1[0]} and {ORDER_1[1]} of one "
        "request did not: ",
    )
    return verdict.expect(
        held,
        f"two pipelines of one request ({ORDER_1[0]} and {ORDER_1[1]}, both order 1) took turns too: the "
        f"second {said}",
        said,
    )


def _order_2(scene: Scene, connect, verdict: Verdict) -> bool:
    """Forced: a request's two order-2 pipe jobs, started by its order 1, take turns as order 1's do,
    and start its order 3 once (pipelines of orders 2 and 3 added to the scene)."""
    order_2, order_3 = ORDER_3_SCENE
    scene.conn.execute(gate_queries()["gate_higher_orders"], {"order_2": order_2, "order_3": order_3})
    request, (first, one, two, last) = scene.request([ORDER_1[0], ORDER_2, order_2, order_3])
    scene.conn.execute(*finish_of(first))  # its only order-1 pipe job: both order-2 pipe jobs start
    race = held_open(connect, finish_of(one), finish_of(two))
    while_open = (
        f"while the finisher of order-2 pipe job {one} (pipeline {ORDER_2}, request {request}) had not "
        f"committed, the finisher of order-2 pipe job {two} (pipeline {order_2})"
    )
    if race.error:
        return verdict.expect(False, "", f"{while_open} failed: {race.error}{_hint(race.error)}")
    started = scene.entries(last)
    fate = "never started" if started == 0 else f"started {started} times"
    if not race.waited:
        named = ({one: f"pipe job {one}'s id"}, {two: f"pipe job {two}'s id"})
        cause = _no_turn(scene, connect, race, named) or (
            "order 1's finishers take turns, but these took none: every finish of a request takes its turn, "
            "whatever its order (a turn taken only for order 1 leaves order 2 and up without one)"
        )
        return verdict.expect(
            False, "", f"{while_open} {_went_on(race)}, and order-3 pipe job {last} {fate}: {cause}"
        )
    return verdict.expect(
        started == 1,
        "two order-2 pipe jobs of one request took turns too (the second waited while the first was open), "
        "and started its order 3 once",
        f"{while_open} waited, yet order-3 pipe job {last} {fate}: {_after_the_gate(scene.conn)}",
    )


def _two_requests(scene: Scene, connect, verdict: Verdict) -> bool:
    """Forced: finishers of other requests must not wait for this one's (a lock per request, not per queue).

    While a finisher of one request is held open, finishers of the ABOVE requests whose ids are 1
    to ABOVE above it finish in turn: a key that only some requests share (request_id % n, a
    division, a hash of few values) makes one of them wait."""
    first, (_, one, _) = scene.request([ORDER_2, *ORDER_1], scene.free_run(ABOVE + 1))
    above = [(first + d, scene.request([ORDER_2, *ORDER_1], first + d)[1][1]) for d in range(1, ABOVE + 1)]
    n, race = held_open_beside(connect, finish_of(one), [finish_of(two) for _, two in above])
    if n is None:
        return verdict.expect(
            True,
            f"while a finisher of request {first} was open, finishers of the {ABOVE} requests above it (ids "
            f"{first + 1} to {first + ABOVE}) each finished at once",
            "",
        )
    second, two = above[n]
    return _two_finishers(verdict, race, (first, one), (second, two), n + 1)


def _two_finishers(
    verdict: Verdict, race: Forced, a: tuple[int, int], b: tuple[int, int], apart: int
) -> bool:
    """What _two_requests saw of `b`'s finisher while that of `a` was open: False, said, if it waited."""
    (first, one), (second, two) = a, b
    if race.error:
        return verdict.expect(
            False,
            "",
            f"while a finisher of request {first} had not committed, a finisher of request {second} failed: "
            f"{race.error}{_hint(race.error)}",
        )
    if race.waited and not race.locked:
        return verdict.expect(
            False,
            "",
            f"while the finisher of pipe job {one} (request {first}) had not committed, the finisher of pipe "
            f"job {two} (request {second}) took more than {HOLD_OPEN:g} s without waiting for any lock: a "
            "delay is no turn (pg_sleep?); a finish must wait only for another finisher of its own request",
        )
    both = [lock for lock in race.first_locks if lock.key in {other.key for other in race.second_locks}]
    took = f" (both took {both[0]})" if both else ""
    if not race.first_locks:
        shared = (
            "(it took no advisory lock: a table lock, LOCK TABLE, or a lock on rows other requests share?), "
            "so finishes of unrelated requests wait for each other"
        )
    elif apart == 1:
        shared = (
            "(a constant key, the pipeline or the order, or a request id divided?), so finishes of "
            "other requests wait for each other"
        )
    else:
        shared = (
            f"(their ids are {apart} apart: a key that requests share in part, as request_id % n, a "
            "division, or a hash of few values?), so finishes of unrelated requests wait for each other"
        )
    return not race.waited or verdict.expect(
        False,
        "",
        f"while the finisher of pipe job {one} (request {first}) had not committed, the finisher of pipe "
        f"job {two} (request {second}, the same pipeline) waited for it{took}: your lock is shared by other "
        f"requests {shared}; key it by the request, NEW.request_id",
    )


def _late_insert(scene: Scene, connect, verdict: Verdict) -> bool:
    """Forced (hardened): an order-2 pipe job inserted while the request's last order-1 finisher is open.

    The hardened gate starts a pipe job inserted after its lower order finished; it must wait
    for an uncommitted finish, or both sides miss each other and the new pipe job never starts.
    """
    request, (only,) = scene.request([ORDER_1[0]])
    insert = (race_queries()["late_pipe_job"], {"request_id": request, "pipe": ORDER_2})
    race = held_open(connect, finish_of(only), insert)
    while_open = f"while the finisher of pipe job {only} (request {request}'s only order-1 pipe job) was open"
    if race.error:
        said = f"{while_open}, the insert of an order-2 pipe job failed: {race.error}{_hint(race.error)}"
        return verdict.expect(False, "", said)
    inserted = race.value
    started = scene.entries(inserted) if isinstance(inserted, int) else 0
    if race.waited and started == 1:
        return verdict.expect(
            True,
            "an order-2 pipe job inserted while order 1's last finisher was open waited for it, then started",
            "",
        )
    fate = "never started" if started == 0 else f"started {started} times"
    if not race.waited:
        cause = (
            "the insert must take the same lock"
            if scene.triggers()[1]
            else "your trigger does not fire on INSERT, so the insert checks without waiting "
            "(BEFORE INSERT OR UPDATE OF pipe_job_finished)"
        )
        said = f"{while_open}, order-2 pipe job {inserted} was inserted without waiting, and {fate}: {cause}"
        return verdict.expect(False, "", said)
    said = (
        f"{while_open}, order-2 pipe job {inserted} waited for it, yet {fate}: {_after_the_gate(scene.conn)}"
    )
    return verdict.expect(False, "", said)


def _after_the_gate(conn: psycopg.Connection) -> str:
    """Why a finisher that waited still missed the other: where the learner's trigger fires."""
    late = conn.execute(gate_queries()["gate_triggers_after_the_gate"]).fetchone()[0]
    if late:
        return (
            f"your trigger {late} fires AFTER, behind the gate's own (AFTER triggers fire in the order of "
            "their names, and pipe_job_starts comes first), so the gate checked before the wait; make it "
            "BEFORE, or name it to sort before pipe_job_starts"
        )
    return "take the lock before the gate checks, and hold it until commit (a transaction-level lock)"


def _hint(error: str) -> str:
    if "could not obtain lock" in error:
        return ": NOWAIT gives up where the finisher must wait its turn"
    if "deadlock" in error:
        return ": each finisher already holds its own row's lock when your trigger asks for the other's"
    if "lock timeout" in error:
        return (
            ": it waited for a lock longer than a lock_timeout allowed (the checker's is 2.5 s; did your "
            "trigger set a shorter one?), or for one that the first finisher's commit did not release"
        )
    return ""


def _judge(result: races.GateTrials, verdict: Verdict, planned: int, what: str) -> bool:
    """Say how the trials went; True if the gate opened exactly once in every one."""
    n = result.trials
    if result.held:
        return verdict.expect(True, f"the gate opened exactly once in every one of {n} {what}", "")
    stopped = " (the trials stopped there)" if n < planned else ""
    if result.deadlocks:
        verdict.refuse(
            f"a deadlock in {result.deadlocks} of {n} {what}{stopped}: each finisher already holds its "
            "own row's lock when your trigger asks for more; ask for one lock per request that nobody "
            "holds half of"
        )
    if result.failed:
        verdict.refuse(
            f"a finisher failed in {result.failed} of {n} {what}{stopped} ({result.error})"
            + _hint(result.error)
        )
    if result.stalled:
        verdict.refuse(
            f"the next order never started in {result.stalled} of {n} {what}: "
            "both finishers still checked before the other had committed"
        )
    if result.twice:
        verdict.refuse(f"order 2 started twice in {result.twice} of {n} {what}")
    return False
