"""What the judges of lessons 07 and 12 share: callers' answers in PostgreSQL's words, and their waits."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from pgqueue.check.core import Call, Verdict, said
from pgqueue.lab import races
from pgqueue.queues import designs
from pgqueue.queues.client import Client
from pgqueue.queues.heartbeats import Identity
from pgqueue.wait import until


def wrong(verdict: Verdict, line: str) -> bool:
    """A ✗ line that ends its check: recorded in `verdict`; False."""
    verdict.wrong.append(line)
    return False


def client(conn: psycopg.Connection) -> Client:
    """The hardened design's client on `conn`: the calls lesson 12's workers send."""
    return designs.get("hardened").client(conn)


def waits(
    call: Call,
    conn: psycopg.Connection,
    watch: psycopg.Connection,
    timeout: float,
    what: str = "the call answering or waiting for a lock",
) -> bool:
    """Once `call`, running on `conn`, answered (False) or waits for a lock (True), read on `watch`.

    Raises wait.Timeout, saying `what` did not happen, if it did neither within `timeout` s.
    """
    pid = conn.info.backend_pid
    seen = until(
        lambda: "answered" if call.done else races.waiting_on_lock(pid, conn=watch) and "waits", timeout, what
    )
    return seen == "waits"


@dataclass(frozen=True)
class Said:
    """What one create_jobs or finish_pipe call answered."""

    made: tuple[int, ...] | None  # create_jobs: the job ids it returned
    code: str | None = None  # SQLSTATE when refused
    words: str = ""  # PostgreSQL's message when refused

    @property
    def ok(self) -> bool:
        """Whether the call was accepted."""
        return self.code is None

    def __str__(self) -> str:
        return "accepted" if self.ok else f"refused with {self.code} ({self.words})"


def hand_over(conn: psycopg.Connection, uuid: str, ids: list[int], jobs: int = 1) -> Said:
    """create_jobs as worker `uuid` calls it: `jobs` new jobs for the next step."""
    try:
        made = client(conn).hand_over(_who(uuid), ids, [{"n": n} for n in range(jobs)])
    except psycopg.Error as exc:
        return refused(exc)
    return Said(tuple(made or ()))


def finish(conn: psycopg.Connection, uuid: str, ids: list[int], pipe_job: int) -> Said:
    """finish_pipe as worker `uuid` calls it."""
    try:
        client(conn).finish(_who(uuid), ids, pipe_job)
    except psycopg.Error as exc:
        return refused(exc)
    return Said(None)


def refused(exc: psycopg.Error) -> Said:
    """A call's refusal: its SQLSTATE and PostgreSQL's words."""
    return Said(None, exc.sqlstate or "?", said(exc))


def _who(uuid: str) -> Identity:
    # create_jobs and finish_pipe name the caller by its uuid alone
    return Identity(uuid, "checker", "checker", "0")
