"""Lesson 08's checker beyond its corpus: the reference in the lesson's own lab, which no query can change."""

import pytest

from pgqueue import check, queries
from pgqueue.queues import labs, single_call

REFERENCE = queries.load("clients/check.sql")["request_flow"]


@pytest.fixture(scope="module", autouse=True)
def lab():
    """The lesson's lab as the exercise finds it: the examples submitted, order 1 waiting."""
    labs.reset("single-call", examples=True, fixes=True)


def test_the_reference_query_holds_in_the_lab_and_in_a_played_scratch_lab():
    verdict = check.request_flow(REFERENCE)
    assert verdict.holds, str(verdict)
    assert "before any worker ran: the same rows as the reference for request(s) 45, 50, 60, " in str(verdict)
    assert "after each of " in str(verdict) and "until every job had run" in str(verdict), str(verdict)


def test_the_query_cannot_change_the_lab():
    before = single_call.job_counts()
    verdict = check.request_flow(
        "UPDATE job_queue SET job_finished = true WHERE %(request_id)s > 0 RETURNING job_id;"
    )
    assert "cannot execute UPDATE in a read-only transaction" in str(verdict), str(verdict)
    assert single_call.job_counts() == before
