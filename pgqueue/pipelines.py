"""What a lab's pipelines hold (the model lessons 01-02 build): their ids, their orders, who serves a step."""

import psycopg

from pgqueue import checks, queries
from pgqueue.errors import PgQueueError


def _q() -> queries.Queries:
    return queries.load("clients/pipelines.sql")


def check_pipeline(conn: psycopg.Connection, poc: str, pipe_id) -> int:
    """The pipeline's order; a clear error when the lab has no such pipeline (listing those it has)."""
    pipe_id = checks.whole(pipe_id, "pipeline id")
    row = conn.execute(_q()["pipe_order"], {"pipe_id": pipe_id}).fetchone()
    if row is None:
        known = [r[0] for r in conn.execute(_q()["pipeline_ids"])]
        have = ", ".join(map(str, known)) if known else "none: load the examples with setup --examples"
        raise PgQueueError(f"lab {poc!r} has no pipeline {pipe_id} (it has {have})")
    return row[0]


def serves_a_step(conn: psycopg.Connection, name: str, version: str) -> bool:
    """Whether any pipeline has a step for process `name` `version`."""
    return conn.execute(_q()["serves_a_step"], {"name": name, "version": version}).fetchone()[0]


def check_gate(conn: psycopg.Connection, pipe_id: int, order: int, request_id: int) -> None:
    """Nothing, or a clear error when a pipe job of order 2 or more could never start."""
    if order < 2:
        return
    if not conn.execute(_q()["gate_opens_later"], {"request_id": request_id, "order": order}).fetchone()[0]:
        raise PgQueueError(
            f"pipeline {pipe_id} has order {order}: its pipe job starts when the last unfinished "
            f"order-{order - 1} pipe job of request {request_id} finishes, and request {request_id} "
            f"has none; submit an order-{order - 1} pipeline for that request first"
        )
