"""Lesson 07's checker beyond its corpus: every trial, the held schedule, and the hardened lab's gate."""

import pytest

from pgqueue import check, queries
from pgqueue.check.gate_takes_turns import held_trials
from pgqueue.lab import races
from pgqueue.queues import labs

REFERENCE = labs.step("single-call", "order_gating").fix_sql


def test_the_reference_fix_holds_in_every_trial():
    verdict = check.gate_takes_turns(REFERENCE)
    assert verdict.holds, str(verdict)
    assert "exactly once in every one of 50 trials" in str(verdict)


@pytest.mark.parametrize(("gate", "counted"), [("row locks", "deadlocks"), ("advisory lock", "started")])
def test_holding_each_finisher_after_its_row_lock_makes_the_rare_schedule_certain(gate, counted):
    # both finishers hold their own row before any later BEFORE trigger runs, in every trial:
    # the row-lock fix deadlocks every time (free trials: about 1 in 50), the advisory lock holds
    fixes = {"row locks": queries.load("clients/races.sql")["gate_row_locks"], "advisory lock": REFERENCE}
    with labs.scratch("single-call", "order_gating", examples=True) as lab:
        with lab.connect() as conn:
            conn.execute(fixes[gate])
        result = held_trials(3, lab.connect, stop_after=None)
    assert result.trials == 3 and getattr(result, counted) == 3, result


# The hardened lab's gate also starts an order-2 pipe job inserted after order 1 finished, so
# its turn-taking trigger fires on INSERT too; the checker replaces the lab's own trigger.
HARDENED = labs.step("hardened", "order_gating").sql
HARDENED_FIX = HARDENED[
    HARDENED.index("CREATE FUNCTION pipe_job_takes_turn") : HARDENED.index("-- The request's pipe jobs")
]


def test_the_hardened_gate_holds_on_the_hardened_lab():
    verdict = check.gate_takes_turns(HARDENED_FIX, poc="hardened")
    assert verdict.holds, str(verdict)
    assert "inserted while order 1's last finisher was open waited for it" in str(verdict)


@pytest.mark.parametrize(
    ("broken", "says"),
    [
        # lesson 07's fix as it stands: the late insert never takes a turn
        (REFERENCE, "does not fire on INSERT"),
        # on INSERT too, but the condition reads OLD, which an INSERT does not have (NULL): no lock
        (REFERENCE.replace("BEFORE UPDATE OF", "BEFORE INSERT OR UPDATE OF"), "inserted without waiting"),
        # a lock per pipe job: the insert and the finish never meet
        (
            HARDENED_FIX.replace("hashtext('order gate'), NEW.request_id", "NEW.pipe_job_id"),
            "without waiting",
        ),
    ],
    ids=["update-only", "reads-old-on-insert", "lock-per-pipe-job"],
)
def test_a_gate_that_lets_a_late_pipe_job_slip_is_refused_on_the_hardened_lab(broken, says):
    verdict = check.gate_takes_turns(broken, poc="hardened")
    assert not verdict.holds
    assert says in str(verdict), str(verdict)


def test_a_gate_that_locks_on_insert_only_is_refused_naming_the_finish():
    # the late insert would take its turn, but two finishers of one request never do: the line
    # says which finish took no lock, what the insert took, and the event the gate also needs
    only_insert = HARDENED_FIX.replace("BEFORE INSERT OR UPDATE OF pipe_job_finished", "BEFORE INSERT")
    verdict = check.gate_takes_turns(only_insert, poc="hardened")
    assert not verdict.holds
    said = " ".join(verdict.wrong)
    assert "neither finish (UPDATE ... SET pipe_job_finished = true) took a lock" in said, str(verdict)
    assert "your trigger fires on INSERT only; the gate must also act when a pipe job is finished" in said


def test_a_late_pipe_job_races_the_finisher_of_the_original_hardened_gate_and_waits():
    # the race itself, on a scratch hardened lab as built: the insert waits, then starts at once
    with labs.scratch("hardened", "order_gating", examples=True) as lab:
        race = races.late_pipe_job_race(connect=lab.connect)
    assert race.waited and race.started, race
