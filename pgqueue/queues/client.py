"""One client per queue design: the calls its workers, lessons, checkers, failures, bench and demo send.

    c = designs.get("hardened").client(conn)   # the design's client on an open lab connection
    c.ask(who, multi=False, batch=1)           # find_job's raw answer: KILL, NO_JOB, LOST_RACE or JSON
    c.claim(who, multi=False, batch=1)         # the jobs handed out (list of dicts); NoJob otherwise
    c.hand_over(who, job_ids, payloads)        # create_jobs: the new jobs' ids
    c.finish(who, job_ids, pipe_job_id)        # finish_pipe; c.finish_all(who, job_ids): finish_pipes
    c.fail(who, job_ids, error)                # hardened's fail_jobs (notify-listen: record_job_failure)
    c.submit(pipe_id, request_id=None, priority=100)  # a new pipe job (notify-listen: a first job)
    c.load_pipelines()                         # the example pipelines, no request
    with client.connect("single-call") as c:   # a client on its own connection (the lab must be set up)
    client.fresh_lab(poc)                      # the lab rebuilt with its example pipelines, no request

single-call ignores `who` where its calls do not name the caller (create_jobs, finish_pipe) and
`batch`; the notify-listen client listens and beats instead of asking (`listen`, `beat`).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from pgqueue import queries, values
from pgqueue.errors import PgQueueError
from pgqueue.queues import labs, pipelines
from pgqueue.queues.heartbeats import Identity, send_heartbeat

if TYPE_CHECKING:
    from pgqueue.queues.designs import Design

# find_job's answers (and notify-listen's heartbeat answers) other than jobs
KILL = "kill"
NO_JOB = "No job found"
LOST_RACE = "Retry, I lost the job race"  # the original single call's, when another caller won
NOT_JOBS = (NO_JOB, LOST_RACE, KILL)

# what the labs' own checks raise: the original's RAISE, the hardened design's coded refusals
REFUSED = (psycopg.errors.RaiseException, psycopg.errors.InvalidParameterValue, psycopg.errors.NoDataFound)


class NoJob(RuntimeError):
    """A claim that expected jobs heard another answer."""


@contextlib.contextmanager
def refusals() -> Iterator[None]:
    """A lab's own refusal (REFUSED) raised as a PgQueueError in the lab's words."""
    try:
        yield
    except REFUSED as exc:
        raise PgQueueError(exc.diag.message_primary) from None


class Client:
    """The calls of a pipe-job design (single-call, hardened) on one connection."""

    def __init__(self, design: Design, conn: psycopg.Connection) -> None:
        self.design, self.conn = design, conn
        # the hardened design keeps single call's tables: its submit and reports are single call's
        shared = ["clients/single_call.sql"] if design.submits == "pipe job" else []
        self.q = {
            name: text
            for file in [*shared, f"clients/{design.folder}.sql"]
            for name, text in queries.load(file).items()
        }

    def _run(self, query: str, /, **params) -> psycopg.Cursor:
        if query not in self.q:
            raise PgQueueError(f"lab {self.design.name!r} has no call {query!r}")
        return self.conn.execute(self.q[query], params)

    def _call(self, query: str, /, **params) -> tuple | None:
        return self._run(query, **params).fetchone()

    def ask(self, who: Identity, *, multi: bool = False, batch: int = 1) -> str:
        """One find_job call of `who` (heartbeat, kill switch, claim); its answer as sent."""
        params = {"uuid": who.uuid, "server": who.server, "name": who.name, "version": who.version}
        return self._call("find_job", **params, multi=multi, batch=batch)[0]

    def claim(self, who: Identity, *, multi: bool = False, batch: int = 1) -> list[dict]:
        """The jobs one find_job call of `who` was handed; NoJob when it heard anything else."""
        answer = self.ask(who, multi=multi, batch=batch)
        if answer in NOT_JOBS:
            raise NoJob(f"{who} expected a job in lab {self.design.name}, heard {answer!r}")
        return json.loads(answer)

    def hand_over(self, who: Identity | None, job_ids: list[int], payloads: list[dict]) -> list[int]:
        """create_jobs: the jobs are done, one new job per payload for the next step; the new ids."""
        uuid = who.uuid if who else None
        return self._call("create_jobs", uuid=uuid, job_ids=job_ids, payloads=Jsonb(payloads))[0]

    def finish(self, who: Identity | None, job_ids: list[int], pipe_job_id: int) -> None:
        """finish_pipe: the last step's jobs are done, and with them (maybe) the pipe job."""
        self._run("finish_pipe", uuid=who.uuid if who else None, job_ids=job_ids, pipe_job_id=pipe_job_id)

    def finish_all(self, who: Identity, job_ids: list[int]) -> None:
        """finish_pipes (hardened): a batch of last-step jobs, of any pipe jobs, in one call."""
        self._run("finish_pipes", uuid=who.uuid, job_ids=job_ids)

    def fail(self, who: Identity, job_ids: list[int], error: str) -> None:
        """fail_jobs (hardened): the attempt failed; each job is retried after a backoff or dead-lettered."""
        self._run("fail_jobs", uuid=who.uuid, job_ids=job_ids, error=error)

    def act(self, who: Identity | None, action) -> list[int]:
        """Carry out a steps.Action: finish the pipe job, or hand over; the ids of the jobs made."""
        if action.payloads is None:
            self.finish(who, action.job_ids, action.pipe_job_id)
            return []
        return self.hand_over(who, action.job_ids, action.payloads)

    def next_request_id(self) -> int:
        """The next free request id."""
        return self._call("next_request_id")[0]

    def submit(self, pipe_id: int, request_id: int | None = None, priority: int = 100) -> int:
        """Create a pipe job (the next free request id by default); its id. A refused one says why.

        A pipe job of order 2 or more whose request has no unfinished pipe job of the order before
        is made, with an OrderGateWarning: nothing starts it until such work arrives and finishes.
        """
        pipe_id = values.whole(pipe_id, "pipeline id")
        if request_id is not None:
            request_id = values.whole(request_id, "request id")
        priority = values.priority(priority)
        order = pipelines.check_pipeline(self.conn, self.design.name, pipe_id)
        if request_id is None:
            request_id = self.next_request_id()
        with self.conn.transaction():
            with refusals():
                made = self._call("submit", request_id=request_id, pipe_id=pipe_id, priority=priority)[0]
            pipelines.warn_if_gate_waits_for_nothing(self.conn, made, pipe_id, order, request_id)
        return made

    def set_priority(self, pipe_job_id: int, priority: int) -> int:
        """Change a pipe job's priority (and its waiting jobs'); how many waiting jobs changed."""
        pipe_job_id = values.whole(pipe_job_id, "pipe job id")
        params = {"pipe_job_id": pipe_job_id, "priority": values.priority(priority)}
        with refusals():
            return self._call("set_priority", **params)[0]

    def load_pipelines(self) -> None:
        """Load the lab's example pipelines (and no request)."""
        self.conn.execute(labs.step(self.design.name, "pipelines").example_sql)


class NotifyListenClient(Client):
    """The calls of the notify/listen design: it listens and beats; the answer comes by NOTIFY."""

    def listen(self, who: Identity) -> None:
        """LISTEN on the process's own channel (its name quoted as an identifier, never formatted)."""
        self.conn.execute(sql.SQL(self.q["listen"]).format(channel=sql.Identifier(who.channel)))

    def beat(self, who: Identity) -> None:
        """One heartbeat; its answer (a job, NO_JOB or KILL) arrives on the process's channel."""
        send_heartbeat(self.conn, who)

    def hand_over(self, who: Identity | None, job_ids: list[int], payloads: list[dict]) -> list[int]:
        """create_job: the job is done, the next step's job is made; its id ([] after the last step)."""
        made = self._call("create_job", job_id=job_ids[0], payload=Jsonb(payloads[0]))[0]
        return [made] if made else []

    def fail(self, who: Identity | None, job_ids: list[int], error: str) -> None:
        """record_job_failure: why the job could not be handed over."""
        self._run("record_job_failure", job_id=job_ids[0], message=error)

    def submit(
        self,
        pipe_id: int,
        request_id: int | None = None,
        payload: dict | None = None,
        creator: str = "TheWebsite",
    ) -> int:
        """Create the first job of a pipeline for a request (the next free one by default); the job id."""
        pipe_id = values.whole(pipe_id, "pipeline id")
        if request_id is not None:
            request_id = values.whole(request_id, "request id")
        values.label(creator, "creator", 100)
        pipelines.check_pipeline(self.conn, self.design.name, pipe_id)
        if request_id is None:
            request_id = self.next_request_id()
        payload = payload or {"description": f"request {request_id}", "parents": []}
        params = {"request_id": request_id, "pipe_id": pipe_id, "creator": creator, "payload": Jsonb(payload)}
        with refusals():
            return self._call("create_first_job", **params)[0]


def of(design: Design, conn: psycopg.Connection) -> Client:
    """The client of `design` on `conn` (designs.get(name).client(conn) calls this)."""
    return (NotifyListenClient if design.name == "notify-listen" else Client)(design, conn)


@contextlib.contextmanager
def connect(poc: str) -> Iterator[Client]:
    """The client of lab `poc` on a connection of its own (closed after the block); the lab must be set up."""
    from pgqueue.queues import designs

    labs.require_set_up(poc)
    with labs.connect(poc) as conn:
        yield of(designs.get(poc), conn)


def fresh_lab(poc: str, upto: int | str | None = None) -> None:
    """Rebuild lab `poc` (up to step `upto`) with its example pipelines and no request yet."""
    from pgqueue.queues import designs

    labs.reset(poc, upto)
    with labs.connect(poc) as conn:
        of(designs.get(poc), conn).load_pipelines()
