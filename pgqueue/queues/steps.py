"""What an example process does with the job(s) it got: hand over, fan out, or finish the pipe.

Behaviour is read from the pipeline data, never from process names: a step whose
`process_configuration` holds {"fan_out": N} creates N parallel jobs; {"gather": true} makes its
process ask for whole parallel sets (find_job's multi mode); the last step of a pipeline
finishes the pipe job; every other step hands one job to the next.
"""

import functools
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from pgqueue import queries
from pgqueue.errors import PgQueueError
from pgqueue.queues import designs
from pgqueue.queues.heartbeats import Identity

_q = functools.partial(queries.load, "clients/single_call.sql")


@dataclass(frozen=True)
class Action:
    """What a worker does after its work: `finish_pipe`, or `create_jobs` with these payloads."""

    job_ids: list[int]
    pipe_job_id: int
    payloads: list[dict] | None  # None: finish the pipe job

    @property
    def kind(self) -> str:
        """'finish_pipe', 'hand_over' or 'fan_out'."""
        if self.payloads is None:
            return "finish_pipe"
        return "fan_out" if len(self.payloads) > 1 else "hand_over"

    def said(self, created: list[int]) -> str:
        """What a worker says once the action is done: the pipe job finished, or the jobs made."""
        return f"pipe job {self.pipe_job_id}" if self.payloads is None else f"{self.job_ids} -> {created}"


def gathers(conn: psycopg.Connection, who: Identity) -> bool:
    """Whether this process gathers parallel sets (then it asks find_job in multi mode)."""
    return conn.execute(_q()["gathers"], {"name": who.name, "version": who.version}).fetchone()[0]


def is_last_step(conn: psycopg.Connection, job: dict) -> bool:
    """Whether the job's process is the last step of its pipeline."""
    params = {"pipe_id": job["pipe_id"], "name": job["job_process_name"]}
    return conn.execute(_q()["is_last_step"], params).fetchone()[0]


def payload(who: Identity, jobs: list[dict], part: int, parts: int) -> dict:
    """A short description of the jobs handled, and the parents' payloads (so the chain travels)."""
    ids = [job["job_id"] for job in jobs]
    description = f"{who.name} {who.version} handled job{'s' if len(ids) > 1 else ''} {ids}"
    if parts > 1:
        description += f", part {part} of {parts}"
    return {"description": description, "parents": [job["job_payload"] for job in jobs]}


def plan(
    conn: psycopg.Connection,
    who: Identity,
    jobs: list[dict],
    last_step: Callable[[psycopg.Connection, dict], bool] = is_last_step,
) -> Action:
    """Decide what to do with the jobs one find_job call returned (`last_step` asks the lab)."""
    if not jobs:
        raise PgQueueError("plan needs at least one job, got none")
    first = jobs[0]
    ids = [job["job_id"] for job in jobs]
    if last_step(conn, first):
        return Action(ids, first["pipe_job_id"], None)
    width = first["job_process_config"].get("fan_out", 1)
    if not isinstance(width, int) or width < 1:
        raise PgQueueError(f"fan_out must be a whole number of jobs, 1 or more, got {width!r}")
    return Action(ids, first["pipe_job_id"], [payload(who, jobs, n + 1, width) for n in range(width)])


def act(conn: psycopg.Connection, action: Action) -> list[int]:
    """Carry the action out in a single-call lab (one transaction); the ids of the jobs it created."""
    return designs.get("single-call").client(conn).act(None, action)
