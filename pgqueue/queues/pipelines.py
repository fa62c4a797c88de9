"""What a lab's pipelines hold (the model lessons 01-02 build): their ids, their orders, who serves a step."""

import functools
import warnings

import psycopg

from pgqueue import queries, values
from pgqueue.errors import PgQueueError

_q = functools.partial(queries.load, "clients/pipelines.sql")


def check_pipeline(conn: psycopg.Connection, poc: str, pipe_id) -> int:
    """The pipeline's order; a clear error when the lab has no such pipeline (listing those it has)."""
    pipe_id = values.whole(pipe_id, "pipeline id")
    row = conn.execute(_q()["pipe_order"], {"pipe_id": pipe_id}).fetchone()
    if row is None:
        known = [r[0] for r in conn.execute(_q()["pipeline_ids"])]
        have = ", ".join(map(str, known)) if known else "none: load the examples with setup --examples"
        raise PgQueueError(f"lab {poc!r} has no pipeline {pipe_id} (it has {have})")
    return row[0]


def serves_a_step(conn: psycopg.Connection, name: str, version: str) -> bool:
    """Whether any pipeline has a step for process `name` `version`."""
    return conn.execute(_q()["serves_a_step"], {"name": name, "version": version}).fetchone()[0]


class OrderGateWarning(UserWarning):
    """A pipe job was made that nothing will start unless more work for its request arrives."""


def warn_if_gate_waits_for_nothing(
    conn: psycopg.Connection, pipe_job_id: int, pipe_id: int, order: int, request_id: int
) -> None:
    """Warn when a new pipe job of order 2 or more waits for order-(N-1) work its request lacks.

    The original allows it on purpose: order-1 work submitted later for the same request opens
    the gate when it finishes. Until then nothing would start this pipe job, so the learner hears.
    """
    if order < 2:
        return
    if not conn.execute(
        _q()["gate_opens_later"], {"request_id": request_id, "order": order, "pipe_job_id": pipe_job_id}
    ).fetchone()[0]:
        warnings.warn(
            f"pipe job {pipe_job_id} (pipeline {pipe_id}, order {order}) starts when the order-{order - 1} "
            f"pipe jobs of request {request_id} finish, and request {request_id} has none unfinished: "
            f"it waits until an order-{order - 1} pipeline is submitted for that request and finishes",
            OrderGateWarning,
            stacklevel=3,
        )
