"""Lesson 07's checker: the learner's fix of the order gate, tried by finishers released together."""

from __future__ import annotations

import psycopg

from pgqueue import labs, queries, races
from pgqueue.check.core import Verdict, install, written

TRIALS = 50  # trials of two finishers released together
STOP_AFTER = 2  # trials with a deadlock or an error before the trials stop (each costs a second or more)
# Then trials where each finisher is held right after its UPDATE locked its own row, and both
# are let go together: every trial meets the schedule that free trials meet only now and then.
# A fix that deadlocks in 1 of 50 free trials deadlocks in these every time.
HELD_TRIALS = 10
ROUTINE = "pipe_job_takes_turn"


def _q() -> queries.Queries:
    return queries.load("clients/check.sql")


def gate_takes_turns(text: str, poc: str = "single-call", trials: int = TRIALS) -> Verdict:
    """Whether the learner's BEFORE UPDATE trigger makes the order gate open exactly once, every time.

    The trigger is installed on a scratch lab built up to order_gating with its examples and
    without the kit's fixes (the original gate); a finish one after the other must still open
    the gate; then `trials` requests each have their two order-1 pipe jobs finished by two
    connections released together. On the hardened lab (`poc="hardened"`), whose gate also
    starts a next-order pipe job inserted late, the trigger replaces the lab's own and must
    make that insert take its turn too.
    """
    verdict = Verdict("your gate fix")
    if written(text, verdict) is None:
        return verdict
    with labs.scratch(poc, "order_gating", examples=True) as lab:

        def connect() -> psycopg.Connection:
            conn = lab.connect()
            conn.execute(_q()["gate_lock_timeout"])
            return conn

        with connect() as conn:
            conn.execute(_q()["gate_drop_trigger"])  # the hardened lab's own goes first
            if not install(conn, text, verdict, replaces=[ROUTINE]):
                return verdict
            if not verdict.expect(
                conn.execute(_q()["gate_before_update_triggers"]).fetchone()[0] > 0,
                "a BEFORE UPDATE trigger on pipe_job_queue calls your function",
                "your SQL created no BEFORE UPDATE trigger on pipe_job_queue: "
                "the function alone never runs (CREATE TRIGGER ... BEFORE UPDATE ... EXECUTE FUNCTION)",
            ):
                return verdict
            if not _one_after_the_other(conn, verdict):
                return verdict
            if not _second_waits_for_the_first(conn, connect, verdict):
                return verdict
            if poc == "hardened" and not _late_insert_waits(conn, connect, verdict):
                return verdict
        free = races.order_gate_trials(trials, connect=connect, stop_after=STOP_AFTER)
        if not _judge(free, verdict, trials, "trials of two finishers released together"):
            return verdict
        held = races.order_gate_trials(HELD_TRIALS, connect=connect, stop_after=STOP_AFTER, hold=True)
        _judge(
            held,
            verdict,
            HELD_TRIALS,
            "trials where both finishers held their own row's lock before your trigger ran",
        )
    return verdict


def _one_after_the_other(conn: psycopg.Connection, verdict: Verdict) -> bool:
    """Two finishes in turn: each pipe job ends finished, and the gate opens once."""
    races_q = queries.load("clients/races.sql")
    report, one, two = (r[0] for r in conn.execute(races_q["gate_trial"], {"pipe": 2, "next_pipe": 4}))
    try:
        for pipe_job in (one, two):
            conn.execute(races_q["finish_pipe_job"], {"pipe_job_id": pipe_job})
    except psycopg.Error as exc:
        verdict.refuse(f"finishing pipe job {pipe_job} failed: {exc.diag.message_primary or exc}")
        return False
    unfinished = [
        p for p in (one, two) if not conn.execute(_q()["gate_pipe_job_finished"], {"id": p}).fetchone()[0]
    ]
    if not verdict.expect(
        not unfinished,
        "an UPDATE that finishes a pipe job still finishes it",
        f"after UPDATE ... SET pipe_job_finished = true, pipe job {unfinished[0] if unfinished else ''} "
        "is still unfinished: a BEFORE trigger must RETURN NEW (RETURN NULL skips the row)",
    ):
        return False
    entries = conn.execute(races_q["entry_job_of"], {"pipe_job_id": report}).fetchone()[0]
    return verdict.expect(
        entries == 1,
        "finished one after the other, the two pipe jobs open the gate once",
        f"finished one after the other, pipe jobs {one} and {two} gave order-2 pipe job {report} "
        f"{entries} entry jobs instead of 1",
    )


def _second_waits_for_the_first(conn: psycopg.Connection, connect, verdict: Verdict) -> bool:
    """One schedule forced: the first finisher's transaction stays open while the second finishes.

    A fix that takes turns makes the second finisher wait for a lock until the first commits;
    a fix that only delays a finisher lets it finish, and both check before either commits.
    """
    races_q = queries.load("clients/races.sql")
    report, one, two = (r[0] for r in conn.execute(races_q["gate_trial"], {"pipe": 2, "next_pipe": 4}))
    try:
        race = races.order_gate_race(one, two, report, connect=connect)
    except psycopg.Error as exc:
        return verdict.expect(
            False, "", f"with one finisher's transaction open, the other failed: {_said(exc)}"
        )
    if not verdict.expect(
        race.waited,
        "while the first finisher's transaction was open, the second waited for it",
        f"while the first finisher of pipe job {one} had not committed, the second finished pipe job "
        f"{two} without waiting: your trigger must make it wait (a lock), not merely delay it",
    ):
        return False
    return verdict.expect(
        race.started,
        "once the first committed, the second finisher opened the gate",
        f"the second finisher waited, yet order-2 pipe job {report} never started: check the gate after "
        "the wait, in a transaction-level lock that the first finisher's commit releases",
    )


def _late_insert_waits(conn: psycopg.Connection, connect, verdict: Verdict) -> bool:
    """One schedule forced: a next-order pipe job is inserted while the finisher's transaction is open.

    The hardened gate starts a pipe job inserted after its lower order finished; it must wait
    for an uncommitted finish, or both sides miss each other and the new pipe job never starts.
    """
    on_insert = conn.execute(_q()["gate_before_insert_triggers"]).fetchone()[0] > 0
    try:
        race = races.late_pipe_job_race(connect=connect)
    except psycopg.Error as exc:
        said = _said(exc)
        return verdict.expect(False, "", f"with a finisher's transaction open, the insert failed: {said}")
    fate = "never started" if not race.started else "started, but only because nothing raced it"
    if not verdict.expect(
        on_insert,
        "a BEFORE INSERT trigger on pipe_job_queue calls your function too",
        f"order-2 pipe job {race.waiting}, inserted while pipe job {race.finished[0]} was finishing, {fate}: "
        "your trigger does not fire on INSERT, so the insert checks without waiting "
        "(BEFORE INSERT OR UPDATE OF pipe_job_finished)",
    ):
        return False
    if not verdict.expect(
        race.waited,
        "an order-2 pipe job inserted while order 1's last finisher was open waited for it",
        f"order-2 pipe job {race.waiting} was inserted without waiting while pipe job {race.finished[0]} "
        f"was finishing, and {fate}: the insert must take the same lock",
    ):
        return False
    return verdict.expect(
        race.started,
        "once the finisher committed, the late order-2 pipe job started at once",
        f"order-2 pipe job {race.waiting}, inserted late, never started: check the lower order "
        "after the wait",
    )


def _said(exc: psycopg.Error) -> str:
    return exc.diag.message_primary or str(exc)


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
        hint = (
            ": a session-level lock stays after commit; a transaction-level one (_xact_) goes with it"
            if "lock timeout" in result.error
            else ""
        )
        verdict.refuse(f"a finisher failed in {result.failed} of {n} {what}{stopped} ({result.error}){hint}")
    if result.stalled:
        verdict.refuse(
            f"the next order never started in {result.stalled} of {n} {what}: "
            "both finishers still checked before the other had committed"
        )
    if result.twice:
        verdict.refuse(f"order 2 started twice in {result.twice} of {n} {what}")
    return False
