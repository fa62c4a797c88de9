"""Lesson 08's flow query: per pipe order of one request, its first job, its last finish, its jobs."""

import functools

from pgqueue import check, queries
from pgqueue.queues import labs
from tests.corpora import Right, Wrong, variant


def JUDGE(answer: str) -> check.Verdict:  # noqa: N802 (the name every corpus gives its judge)
    """check.request_flow with no lesson lab, so that only its scratch scene decides.

    The judge first compares on the learner's own single-call lab, whose requests here are
    whatever the tests that ran before on this xdist process left, so the first ✗ it finds (and
    the sentence this corpus expects) would depend on the schedule; tests/check/test_request_flow.py
    judges on a lesson lab of known contents.
    """
    labs.drop("single-call")
    return check.request_flow(answer)


REFERENCE = queries.load("clients/check.sql")["request_flow"]
FIRST = "min(j.job_create_timestamp) AS first_created"
LAST = "max(j.job_finish_timestamp) AS last_finished"
COUNT = "count(*) AS jobs"
FROM = (
    "  FROM job_queue j\n  JOIN pipe_job_queue pj USING (pipe_job_id)\n"
    "  JOIN pipelines p ON p.pipe_id = pj.pipe_id\n"
)
GROUP = " GROUP BY p.pipe_order\n ORDER BY p.pipe_order;"
# the request's orders first, then each one's numbers: rows in the orders' order, whatever it is
LATERAL = (
    "SELECT o.pipe_order, f.first_created, f.last_finished, f.jobs\n"
    "  FROM (SELECT DISTINCT p.pipe_order FROM pipelines p\n"
    "          JOIN pipe_job_queue pj ON pj.pipe_id = p.pipe_id WHERE pj.request_id = %(request_id)s) o,\n"
    "  LATERAL (SELECT min(j.job_create_timestamp) AS first_created,\n"
    "                  max(j.job_finish_timestamp) AS last_finished, count(*) AS jobs\n"
    "             FROM job_queue j JOIN pipe_job_queue pj USING (pipe_job_id)\n"
    "             JOIN pipelines p ON p.pipe_id = pj.pipe_id\n"
    "            WHERE pj.request_id = %(request_id)s AND p.pipe_order = o.pipe_order) f\n"
    " WHERE f.jobs > 0{order};"
)


changed = functools.partial(variant, REFERENCE)  # the reference with one change


WRONG = [
    Wrong("counts-pipe-jobs", changed("count(*)", "count(DISTINCT pj.pipe_job_id)"), "order 1: you counted "),
    Wrong(
        "counts-finished-jobs-only",
        changed("count(*)", "count(j.job_finish_timestamp)"),
        "you counted 0 jobs",
    ),
    Wrong(
        "created-for-finished",
        changed("max(j.job_finish_timestamp)", "max(j.job_create_timestamp)"),
        "order 1: your last_finished is",
    ),
    Wrong(
        "assigned-for-created",
        changed("min(j.job_create_timestamp)", "min(j.job_assign_timestamp)"),
        "order 1: your first_created is NULL, the first job was created at",
    ),
    # the pipe job is made when the request is submitted, long before an order-2 job
    Wrong(
        "pipe-job-creation-for-the-first-job",
        changed("min(j.job_create_timestamp)", "min(pj.pipe_job_create_timestamp)"),
        "your first_created is",
    ),
    # NULL until the whole order has finished, not the last finish so far
    Wrong(
        "last-finished-only-when-all-finished",
        changed(
            LAST,
            "CASE WHEN count(j.job_finish_timestamp) = count(*) THEN max(j.job_finish_timestamp) END"
            " AS last_finished",
        ),
        "your last_finished is NULL, the last job finished at",
    ),
    Wrong(
        "pipe-job-id-for-request",
        changed("pj.request_id =", "pj.pipe_job_id ="),
        "request 45: your query has no row for order 1",
    ),
    Wrong(
        "one-row-per-pipeline",
        changed(GROUP, " GROUP BY p.pipe_order, p.pipe_id\n ORDER BY p.pipe_order;"),
        "request 50: your query has 2 rows for order 1: one row per pipe order",
    ),
    Wrong(
        "finished-jobs-only",
        changed("WHERE pj.request_id", "WHERE j.job_finished AND pj.request_id"),
        "your query has no row for order 1",
        # no row for any request says nothing of %(request_id)s: told so, not that it ignores it
        also=("gives no row for any of requests",),
    ),
    # every pipeline of the lab, the request's jobs outer-joined: each pipeline of the order the
    # request does not use counts as a job, and an order without jobs gets a row
    Wrong(
        "outer-join-from-pipelines",
        changed(
            FROM + " WHERE pj.request_id = %(request_id)s\n",
            "  FROM pipelines p\n"
            "  LEFT JOIN pipe_job_queue pj ON pj.pipe_id = p.pipe_id AND pj.request_id = %(request_id)s\n"
            "  LEFT JOIN job_queue j ON j.pipe_job_id = pj.pipe_job_id\n",
        ),
        "request 45: order 1: you counted 4 jobs, there were 1",
    ),
    # a step of the pipeline joined in for its name: each job counted once per step
    Wrong(
        "join-multiplies-rows",
        changed(FROM, FROM + "  JOIN pipeline_processes pp ON pp.pipe_id = p.pipe_id\n"),
        "you counted",
    ),
    Wrong(
        "descending", changed("ORDER BY p.pipe_order;", "ORDER BY p.pipe_order DESC;"), "ORDER BY pipe_order"
    ),
    # rows as the plan gives them: sorted while PostgreSQL happens to group by sorting
    Wrong(
        "no-order-by",
        changed(GROUP, " GROUP BY p.pipe_order;"),
        "rows come in no defined order unless ORDER BY says so",
    ),
    Wrong(
        "no-order-by-per-order-lateral",
        LATERAL.format(order=""),
        "rows come in no defined order unless ORDER BY says so",
    ),
    # time is not the order: order 0 starts beside order 1, not before it
    Wrong(
        "sorted-by-first-created",
        changed(GROUP, " GROUP BY p.pipe_order\n ORDER BY first_created;"),
        "your rows come in the order [1, 0]: the lesson asks them by pipe_order ascending",
    ),
    Wrong("other-column-name", changed("AS jobs", "AS job_count"), "(missing: jobs)"),
    Wrong("hard-coded-request", changed("%(request_id)s", "50"), "it does not read %(request_id)s"),
    Wrong("positional-placeholder", changed("%(request_id)s", "%s"), "psycopg could not send your SQL"),
    Wrong(
        "the-skeleton-unfilled",
        changed(f"       {LAST},\n       {COUNT}\n", "       -- TODO: last_finished and jobs\n"),
        "PostgreSQL refused your query",
    ),
    # a TODO left in a comment is judged by what the query does: here, no row for any order
    Wrong(
        "a-todo-in-a-comment",
        "SELECT 1 AS pipe_order WHERE %(request_id)s < 0 -- TODO",
        says="your query has no row for order 1",
    ),
]

RIGHT = [
    Right("the-lessons-reference", REFERENCE),
    Right("order-by-position", changed(GROUP, " GROUP BY 1\n ORDER BY 1;")),
    Right("per-order-lateral-sorted", LATERAL.format(order="\n ORDER BY o.pipe_order")),
    Right(
        "window-then-distinct",
        "SELECT DISTINCT p.pipe_order, min(j.job_create_timestamp) OVER w AS first_created,\n"
        "       max(j.job_finish_timestamp) OVER w AS last_finished, count(*) OVER w AS jobs\n"
        f"{FROM} WHERE pj.request_id = %(request_id)s\n"
        "WINDOW w AS (PARTITION BY p.pipe_order)\n ORDER BY p.pipe_order;",
    ),
    Right(
        "the-jobs-own-pipeline-and-a-filter",
        "SELECT p.pipe_order, min(j.job_create_timestamp) AS first_created,\n"
        "       max(j.job_finish_timestamp) FILTER (WHERE j.job_finished) AS last_finished,\n"
        "       count(j.job_id) AS jobs\n"
        "  FROM pipe_job_queue pj, job_queue j, pipelines p\n"
        " WHERE j.pipe_job_id = pj.pipe_job_id AND p.pipe_id = j.pipe_id AND pj.request_id = %(request_id)s\n"
        " GROUP BY 1 ORDER BY 1;",
    ),
    Right(
        "cte-per-order",
        "WITH mine AS (\n"
        "  SELECT p.pipe_order, j.job_create_timestamp, j.job_finish_timestamp FROM job_queue j\n"
        "    JOIN pipe_job_queue pj ON pj.pipe_job_id = j.pipe_job_id\n"
        "    JOIN pipelines p ON p.pipe_id = pj.pipe_id\n"
        "   WHERE pj.request_id = %(request_id)s)\n"
        "SELECT pipe_order, min(job_create_timestamp) AS first_created,\n"
        "       max(job_finish_timestamp) AS last_finished, count(*)::int AS jobs\n"
        "  FROM mine GROUP BY pipe_order ORDER BY pipe_order;",
    ),
    Right(
        "orders-from-pipelines-with-exists",
        "SELECT o.pipe_order, o.first_created, o.last_finished, o.jobs FROM (\n"
        "  SELECT p.pipe_order, min(j.job_create_timestamp) AS first_created,\n"
        "         max(j.job_finish_timestamp) AS last_finished, count(j.*) AS jobs\n"
        "    FROM pipelines p\n"
        "    LEFT JOIN pipe_job_queue pj ON pj.pipe_id = p.pipe_id AND pj.request_id = %(request_id)s\n"
        "    LEFT JOIN job_queue j ON j.pipe_job_id = pj.pipe_job_id\n"
        "   GROUP BY p.pipe_order) o\n"
        " WHERE o.jobs > 0 ORDER BY o.pipe_order;",
    ),
]
