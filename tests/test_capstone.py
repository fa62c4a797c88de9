"""Lesson 12's capstone: a short chaos round on the hardened lab rebuilt with the learner's routines."""

import pytest

from pgqueue import chaos, labs
from pgqueue.errors import PgQueueError

REFERENCE = labs.step(chaos.POC, "find_job").sql
GATE = labs.step(chaos.POC, "order_gating").sql


def routine(text: str, name: str, up_to: str) -> str:
    """The reference text of one routine: from its CREATE to the comment that follows it."""
    start = text.index(f"CREATE FUNCTION {name}(")
    return text[start : text.index(up_to, start)]


YOURS = {
    "claim_jobs": routine(REFERENCE, "claim_jobs", "-- hardened: claim a whole"),
    "rescue_jobs": routine(REFERENCE, "rescue_jobs", "-- hardened: lock jobs"),
    "hold_jobs": routine(REFERENCE, "hold_jobs", "-- hardened: jobs `ids`"),
    "pipe_job_takes_turn": routine(GATE, "pipe_job_takes_turn", "-- The request's pipe jobs"),
}
NO_RESCUE = "CREATE FUNCTION rescue_jobs() RETURNS integer LANGUAGE sql AS $$ SELECT 0 $$;"


def test_a_routine_the_round_does_not_replace_is_named_before_anything_is_touched():
    with pytest.raises(PgQueueError, match="not find_job"):
        chaos.on_yours({"find_job": "SELECT 1"})


def test_sql_postgresql_refuses_ends_the_round_before_it_starts_with_its_words():
    found = chaos.on_yours({"claim_jobs": "CREATE FUNCTION claim_jobs( RETURNS"})
    assert not found.held and found.kills == 0
    assert found.problems[0].startswith("claim_jobs: PostgreSQL refused your SQL"), found.problems


@pytest.mark.chaos
def test_the_reference_pieces_hold_a_short_round_and_a_rescue_that_does_nothing_loses_jobs():
    held = chaos.on_yours(YOURS)
    assert held.held and held.kills_holding > 0, held.summary()
    # jobs a killed holder kept never end here, so the round would wait its whole drain: 10 s
    # shows it as well as 25, and "still hold" below does not depend on the wait at all
    lost = chaos.on_yours({**YOURS, "rescue_jobs": NO_RESCUE}, drain=10)
    assert lost.kills_holding > 0, lost.summary()  # the round kills holders first, when any hold
    assert "jobs never ended (lost)" in "\n".join(lost.problems), lost.summary()
    assert "killed workers still hold" in "\n".join(lost.problems), lost.summary()
