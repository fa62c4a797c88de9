"""Lesson 08's checker accepts the reference flow query and names the first difference of broken ones."""

import pytest

from pgqueue import check, queries
from pgqueue.queues import labs, single_call

REFERENCE = queries.load("clients/check.sql")["request_flow"]
ORDER_BY = " GROUP BY p.pipe_order\n ORDER BY p.pipe_order;"


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


@pytest.mark.parametrize(
    ("broken", "says"),
    [
        # a TODO left in a comment is judged by what the query does: here, no row for any order
        ("SELECT 1 AS pipe_order WHERE %(request_id)s < 0 -- TODO", "your query has no row for order 1"),
        (REFERENCE.replace("%(request_id)s", "50"), "it does not read %(request_id)s"),
        (
            REFERENCE.replace("count(*)", "count(DISTINCT pj.pipe_job_id)"),
            "order 1: you counted ",
        ),
        (
            REFERENCE.replace("max(j.job_finish_timestamp)", "max(j.job_create_timestamp)"),
            "order 1: your last_finished is",
        ),
        (
            REFERENCE.replace("min(j.job_create_timestamp)", "min(j.job_assign_timestamp)"),
            "order 1: your first_created is NULL, the first job was created at",
        ),
        (
            REFERENCE.replace("pj.request_id =", "pj.pipe_job_id ="),
            "request 45: your query has no row for order 1",
        ),
        (
            REFERENCE.replace(ORDER_BY, " GROUP BY p.pipe_order, p.pipe_id\n ORDER BY p.pipe_order;"),
            "request 50: your query has 2 rows for order 1",
        ),
        (REFERENCE.replace("AS jobs", "AS job_count"), "(missing: jobs)"),
        (
            REFERENCE.replace("WHERE pj.request_id", "WHERE j.job_finished AND pj.request_id"),
            "your query has no row for order 1",
        ),
        (REFERENCE.replace("ORDER BY p.pipe_order;", "ORDER BY p.pipe_order DESC;"), "ORDER BY pipe_order"),
        # sorted as planned here; with sorting made dear the four orders of the drawn request come
        # back from a hash table, never as 0, 1, 2, 3
        (
            REFERENCE.replace("\n ORDER BY p.pipe_order;", ";"),
            "rows come in no defined order unless ORDER BY says so",
        ),
        (REFERENCE.replace("FROM job_queue j", "FROM jobs j"), 'relation "jobs" does not exist'),
    ],
    ids=[
        "todo",
        "hard-coded",
        "counts-pipe-jobs",
        "created-not-finished",
        "assigned-not-created",
        "pipe-job-not-request",
        "per-pipeline",
        "column-name",
        "finished-only",
        "descending",
        "no-order-by",
        "no-such-table",
    ],
)
def test_a_broken_query_is_refused_with_the_first_difference(broken, says):
    verdict = check.request_flow(broken)
    assert not verdict.holds
    assert says in str(verdict), str(verdict)
