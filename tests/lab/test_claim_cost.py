"""A hardened claim beside jobs in other states: what its pick and its rescue read, measured."""

import pytest

from pgqueue.errors import PgQueueError
from pgqueue.lab import claim_cost

BESIDE = 3_000


@pytest.fixture(scope="module")
def costs():
    return {state: claim_cost.measure(state, BESIDE, calls=3) for state in claim_cost.STATES}


def test_alone_the_pick_reads_about_the_row_it_takes(costs):
    alone = costs[claim_cost.STATES[0]]
    assert alone.beside == 0 and alone.pick_rows < 100 and len(alone.ms) == 3


def test_jobs_backing_off_ahead_are_read_and_passed_over_by_every_pick(costs):
    backing_off = costs[claim_cost.STATES[1]]
    assert backing_off.pick_rows > BESIDE  # every one of them, then the due job
    assert backing_off.rescue_rows < 100


def test_every_lease_is_read_by_the_rescue_each_claim_makes(costs):
    running = costs[claim_cost.STATES[2]]
    assert running.rescue_rows >= BESIDE and running.pick_rows < 100


def test_an_unknown_state_is_named():
    with pytest.raises(PgQueueError, match="state is one of .*got 'dead'"):
        claim_cost.measure("dead")
