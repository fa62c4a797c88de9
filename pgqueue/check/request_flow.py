"""Lesson 08's checker: the learner's query of a request's flow per pipe order, against the reference."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator

import psycopg
from psycopg.rows import dict_row

from pgqueue.check.core import Verdict, checker, checks, query_refused
from pgqueue.queues import labs, steps
from pgqueue.queues.heartbeats import Identity
from pgqueue.queues.single_call import NO_JOB, Worker

POC = "single-call"
COLUMNS = ("pipe_order", "first_created", "last_finished", "jobs")
PARAMETER = "it does not read %(request_id)s, by which the checker passes each request"
ROUNDS = 40  # rounds of every process asking for work, at most, to play the requests through


@checker("your request-flow query", POC, examples=True, fixes=True, sends=("request_id",))
def request_flow(verdict: Verdict, lab: labs.Scratch, conn: psycopg.Connection, text: str, poc: str) -> None:
    """Whether the learner's query gives, per pipe order of `%(request_id)s`, the reference's rows.

    It runs read-only on the lesson's lab (every request there), then on a scratch lab with the
    example requests, fan-out widths drawn anew and one more request drawn (through pipelines of
    orders 0 and 3 drawn too), before any worker ran and after each round of real find_job /
    create_jobs / finish_pipe calls that play them through. Each time it runs twice: as PostgreSQL
    plans it, and with sorting made dear, so rows in no defined order come back out of order.
    The first difference is named, with both values.
    """
    if labs.is_set_up(poc):
        with labs.connect(poc) as own:
            ready = own.execute(checks()["flow_ready"]).fetchone()[0]
            if ready and not _compare(own, text, verdict, "in your lab"):
                return
    where = f"in a scratch lab ({_draw(conn)})"
    if not _compare(conn, text, verdict, f"{where}, before any worker ran"):
        return
    # compared after every round: an order with some jobs finished and some not shows too
    workers, rounds = list(_workers(conn)), 0
    while rounds < ROUNDS and _play_round(conn, workers):
        rounds += 1
        if not _compare(conn, text, verdict, f"{where}, after {rounds} round(s) of work", tell=False):
            return
    left = conn.execute(checks()["flow_unfinished"]).fetchone()[0]
    until = "every job had run" if not left else f"{left} jobs were still unfinished"
    verdict.held.append(
        f"there, the same rows as the reference after each of {rounds} rounds of work, until {until}, "
        "and sorted by pipe_order also when sorting was made dear to PostgreSQL (enable_sort off)"
    )


def _draw(conn: psycopg.Connection) -> str:
    """Draw the scratch lab's fan-out widths, a pipeline of order 0 and one of order 3, and one more
    request through them; what was drawn, in words."""
    widths = conn.execute(checks()["flow_draw_fan_out"]).fetchall()
    conn.execute(checks()["flow_refresh_job_config"])
    pipes = conn.execute(checks()["flow_pipelines"]).fetchall()
    tag, at = secrets.token_hex(2), 10 + secrets.randbelow(80)
    # order 3 waits for order 2; order 0 starts at once and chains to nothing (work fed in)
    drawn = {3: (at, "archiver"), 0: (at + 1 + secrets.randbelow(9), "intake")}
    steps = {}
    for order, (pipe_id, role) in drawn.items():
        names = [f"{role}_{tag}_{n}" for n in range(1 + secrets.randbelow(2))]
        versions = [f"1.{secrets.randbelow(9)}.{n}" for n in range(len(names))]
        params = {"pipe_id": pipe_id, "pipe_name": f"{role} {tag}", "pipe_order": order}
        conn.execute(checks()["flow_draw_pipeline"], {**params, "names": names, "versions": versions})
        steps[order] = len(names)
    # the drawn pipelines first in the table: a query that reads pipelines in the table's order
    # and does not sort meets orders 3 and 0 before 1 and 2
    conn.execute(checks()["flow_heap_order"], {"pipe_ids": [pipe_id for pipe_id, _ in drawn.values()]})
    first = [pipe_id for pipe_id, order in pipes if order == 1]
    chosen = secrets.SystemRandom().sample(first, 1 + secrets.randbelow(2))
    # order 0 after order 1, so its first job is made after theirs: sorted by first_created, the
    # rows would come 1, 0, ..., not by pipe_order
    chosen += [pipe_id for pipe_id, order in pipes if order > 1] + [drawn[3][0], drawn[0][0]]
    request_id = 100 + secrets.randbelow(900)
    conn.execute(checks()["flow_draw_request"], {"request_id": request_id, "pipe_ids": chosen})
    fans = ", ".join(f"{name} of pipeline {pipe_id} fans out {n}" for pipe_id, name, n in widths)
    orders = ", ".join(
        f"{drawn[o][0]} of order {o} ({steps[o]} step{'s' if steps[o] > 1 else ''})" for o in (3, 0)
    )
    return f"{fans}; request {request_id} through pipelines {', '.join(map(str, chosen))}, drawn: {orders}"


def _compare(conn: psycopg.Connection, text: str, verdict: Verdict, where: str, *, tell: bool = True) -> bool:
    """Compare the learner's rows with the reference's for every request with jobs; False at the first
    difference (named in the verdict). `tell` says a match in the verdict too."""
    requests = [r for (r,) in conn.execute(checks()["flow_requests"]).fetchall()]
    for request_id in requests:
        want = _rows(conn, checks()["request_flow"], request_id)
        try:
            got = _rows(conn, text, request_id)
            hashed = _rows(conn, text, request_id, plan=checks()["flow_hash_plan"])
        except psycopg.Error as exc:
            verdict.refuse(f"{where}, request {request_id}: {query_refused(text, exc)}")
            return False
        wrong = _difference(got, want)
        if wrong is None:
            wrong = _difference(hashed, want)
            # rows that change with the plan: a LIMIT or DISTINCT ON that no ORDER BY decides
            wrong = wrong and f"when sorting was made dear to PostgreSQL (another plan), {wrong}"
            wrong = wrong or _disorder(got, hashed)
        if wrong is not None:
            verdict.refuse(f"{where}, request {request_id}: {wrong}{_same_for_every(conn, text, requests)}")
            return False
    if tell:
        verdict.held.append(
            f"{where}: the same rows as the reference for request(s) {', '.join(map(str, requests))}"
        )
    return True


def _same_for_every(conn: psycopg.Connection, text: str, requests: list[int]) -> str:
    """What a query that gives the same rows whatever the request shows, said after its difference;
    '' when its rows differ from one request to another (or there is one request only)."""
    if len(requests) < 2:
        return ""
    mine = [_rows(conn, text, request_id) for request_id in requests]
    if any(rows != mine[0] for rows in mine[1:]):
        return ""
    listed = ", ".join(map(str, requests))
    if not mine[0]:  # no rows for any request says nothing of %(request_id)s: something drops them all
        return (
            f"; your query gives no row for any of requests {listed}, though each has jobs: something in it "
            "drops rows a request's jobs make (an inner join to rows not every job has, or a filter on "
            "their state?)"
        )
    return f"; your query gives the same rows for requests {listed}: {PARAMETER}"


def _rows(conn: psycopg.Connection, text: str, request_id: int, plan: str | None = None) -> list[dict]:
    """A query's rows, in a READ ONLY transaction that is rolled back: a query cannot change the lab.
    `plan` sets the planner for that transaction first."""
    with conn.transaction(force_rollback=True), conn.cursor(row_factory=dict_row) as cur:
        cur.execute(checks()["flow_read_only"])
        if plan is not None:
            cur.execute(plan)
        return cur.execute(text, {"request_id": request_id}).fetchall()


def _difference(got: list[dict], want: list[dict]) -> str | None:
    """The first difference between the learner's rows and the reference's, but for their order, in
    words; None if none."""
    columns = list(got[0]) if got else list(COLUMNS)
    missing = [c for c in COLUMNS if c not in columns]
    if missing:
        return (
            f"your query returns the columns {', '.join(columns)}; name them "
            f"{', '.join(COLUMNS)} (missing: {', '.join(missing)})"
        )
    orders = [row["pipe_order"] for row in got]
    if len(set(orders)) < len(orders):
        twice = next(o for o in orders if orders.count(o) > 1)
        return f"your query has {orders.count(twice)} rows for order {twice}: one row per pipe order"
    mine = {row["pipe_order"]: row for row in got}
    for row in want:
        order = row["pipe_order"]
        if order not in mine:
            return f"your query has no row for order {order} (it made {_jobs(row['jobs'])})"
        if mine[order]["jobs"] != row["jobs"]:
            return f"order {order}: you counted {_jobs(mine[order]['jobs'])}, there were {row['jobs']}"
        for column, what in (
            ("first_created", "first job was created"),
            ("last_finished", "last job finished"),
        ):
            if mine[order][column] != row[column]:
                yours = f"order {order}: your {column} is {_when(mine[order][column])}"
                if row[column] is None:
                    return f"{yours}, but no job of that order has finished yet (it must be NULL)"
                return f"{yours}, the {what} at {_when(row[column])}"
    extra = sorted(set(mine) - {row["pipe_order"] for row in want})
    if extra:
        return f"your query has a row for order {extra[0]}, where the request has no job"
    return None


def _disorder(got: list[dict], hashed: list[dict]) -> str | None:
    """Rows not sorted by pipe_order, as planned or with sorting made dear, in words; None if sorted."""
    planned, dear = [row["pipe_order"] for row in got], [row["pipe_order"] for row in hashed]
    if planned == sorted(planned) and dear == sorted(dear):
        return None
    if planned == dear:
        # the same wrong order either way: sorted by something else, or read as stored
        return (
            f"your rows come in the order {planned}: the lesson asks them by pipe_order ascending, which "
            "ORDER BY pipe_order says (no DESC, no other column before it); without ORDER BY, rows come "
            "in no defined order"
        )
    return (
        f"your rows come in the order {planned} as PostgreSQL planned your query, but in the order {dear} "
        "when sorting was made dear to it (enable_sort off: it then picks a plan that does not sort, such "
        "as grouping by hashing, as it may on its own for larger tables): rows come in no defined order "
        "unless ORDER BY says so (ORDER BY pipe_order)"
    )


def _jobs(n: object) -> str:
    return f"{n} job" if n == 1 else f"{n} jobs"


def _when(value: object) -> str:
    if value is None:
        return "NULL"
    return value.strftime("%H:%M:%S.%f") if hasattr(value, "strftime") else repr(value)


def _play_round(conn: psycopg.Connection, workers: list[tuple[Worker, bool]]) -> bool:
    """Every process asks for work once with the real find_job, then hands over or finishes;
    whether any of them worked."""
    worked = False
    for worker, multi in workers:
        answer = worker.find_job(conn, multi)
        if answer == NO_JOB or not answer.startswith("["):
            continue
        steps.act(conn, steps.plan(conn, worker.who, json.loads(answer)))
        worked = True
    return worked


def _workers(conn: psycopg.Connection) -> Iterator[tuple[Worker, bool]]:
    for name, version in conn.execute(checks()["flow_processes"]).fetchall():
        who = Identity.new(name, version)
        yield Worker(who), steps.gathers(conn, who)
