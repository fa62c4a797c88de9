"""One bench worker process: a design's claim-and-finish loop (or a peer's worker), released on cue.

`python -m pgqueue.bench.worker KIND DATABASE BATCH` connects, says `ready`, waits for a line
`go SECONDS` on stdin, then works: it claims and finishes no-op jobs the way that design's worker
does (the same calls, without the kit's event log or simulated work) until the queue has no job
for it or SECONDS have passed, and prints one JSON line: how many jobs it finished and when it
started and stopped (time.monotonic(), one clock for every process on the machine).

The `wake:` kinds wait idle instead, as an idle worker does, and print the moment they held each
job: the bench's producer commits a job at a known moment and reads how long it waited.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable

import psycopg
from psycopg import sql

from pgqueue import queries, server
from pgqueue.bench import peers
from pgqueue.queues import heartbeats, notify_listen
from pgqueue.queues.hardened import NO_JOB as HARDENED_NO_JOB
from pgqueue.queues.heartbeats import Identity
from pgqueue.queues.worker_base import WorkerBase
from pgqueue.wait import Backoff

NAME, VERSION = "bench_noop", "1.0.0"  # the bench's one-step pipeline (sql/clients/bench.sql)
ANSWER_TIMEOUT = notify_listen.Options().timeout  # seconds a notify-listen beat waits for its answer


def _retry() -> Backoff:
    """The kit's worker's backoff after a lost race (a serialization failure): waiting is part of the cost."""
    return Backoff(WorkerBase.RETRY_BASE, WorkerBase.RETRY_CAP)


def _q(file: str) -> queries.Queries:
    return queries.load(file)


def _params(who: Identity, **extra) -> dict:
    return {"uuid": who.uuid, "server": who.server, "name": who.name, "version": who.version, **extra}


# Each loop step claims and finishes what one call gives it: the number of jobs finished, or
# None when the queue had no job for it (the process is done).
Step = Callable[[], "int | None"]


def _notify_listen(conn: psycopg.Connection, who: Identity) -> Step:
    """Beat (SERIALIZABLE, as the kit's worker does by default), hear the job, hand it over."""
    notify_listen.listen(conn, who)
    conn.isolation_level = psycopg.IsolationLevel.SERIALIZABLE
    create_job = _q("clients/notify_listen.sql")["create_job"]
    retry = _retry()

    def step() -> int | None:
        try:
            with conn.transaction():
                heartbeats.send_heartbeat(conn, who)
        except psycopg.errors.SerializationFailure:
            time.sleep(retry.next())  # another worker won this job: beat again after a backoff
            return 0
        retry.reset()
        answer = next(iter(conn.notifies(timeout=ANSWER_TIMEOUT, stop_after=1)), None)
        if answer is None or answer.payload == notify_listen.NO_JOB:
            return None
        _hand_over(conn, create_job, json.loads(answer.payload))
        return 1

    return step


def _hand_over(conn: psycopg.Connection, create_job: str, job: dict) -> None:
    """create_job for a finished job, again after a backoff while SERIALIZABLE says another was in the way."""
    retry = _retry()
    while True:
        try:
            with conn.transaction():
                conn.execute(create_job, {"job_id": job["job_id"], "payload": psycopg.types.json.Jsonb({})})
            return
        except psycopg.errors.SerializationFailure:
            time.sleep(retry.next())  # nothing was written; the kit's worker waits and tries again too


def _single_call(conn: psycopg.Connection, who: Identity) -> Step:
    """find_job, then finish_pipe: the bench's pipeline has one step."""
    q = _q("clients/single_call.sql")

    def step() -> int | None:
        answer = conn.execute(q["find_job"], _params(who, multi=False)).fetchone()[0]
        if answer == notify_listen.NO_JOB:
            return None
        jobs = json.loads(answer)
        for job in jobs:
            conn.execute(q["finish_pipe"], {"job_ids": [job["job_id"]], "pipe_job_id": job["pipe_job_id"]})
        return len(jobs)

    return step


def _hardened(conn: psycopg.Connection, who: Identity, batch: int) -> Step:
    """find_job for up to `batch` jobs, then finish them as the hardened worker does.

    One job: finish_pipe. A batch of last-step jobs: finish_pipes, once for all of them.
    """
    q = _q("clients/hardened.sql")

    def step() -> int | None:
        answer = conn.execute(q["find_job"], _params(who, multi=False, batch=batch)).fetchone()[0]
        if answer == HARDENED_NO_JOB:
            return None
        jobs = json.loads(answer)
        if len(jobs) > 1:
            conn.execute(q["finish_pipes"], {"uuid": who.uuid, "job_ids": [job["job_id"] for job in jobs]})
        else:
            params = {"uuid": who.uuid, "job_ids": [jobs[0]["job_id"]], "pipe_job_id": jobs[0]["pipe_job_id"]}
            conn.execute(q["finish_pipe"], params)
        return len(jobs)

    return step


def _floor(conn: psycopg.Connection, who: Identity, batch: int) -> Step:
    """Claim up to `batch` rows with SKIP LOCKED, then mark them done: two commits per claim."""
    q = _q("clients/bench.sql")

    def step() -> int | None:
        ids = [row[0] for row in conn.execute(q["floor_claim_batch"], {"uuid": who.uuid, "batch": batch})]
        if not ids:
            return None
        conn.execute(q["floor_finish"], {"ids": ids})
        return len(ids)

    return step


def _loop(kind: str, database: str, batch: int) -> Callable[[float], int]:
    """Connect and prepare; the loop that works until `stop_at` and returns the jobs it finished."""
    if kind.startswith("peer:"):
        peer = next(p for p in peers.PEERS if p.name == kind.removeprefix("peer:"))
        if why := peers.missing(peer):  # it imports the peer too: not in the timed run
            raise SystemExit(why)
        uri = server.resolve().uri_for(database)
        return lambda stop_at: peers.work(peer, uri, stop_at)
    conn = server.connect(database, application_name=f"pgqueue bench {kind}")
    who = Identity.new(NAME, VERSION)
    steps = {
        "notify-listen": lambda: _notify_listen(conn, who),
        "single-call": lambda: _single_call(conn, who),
        "hardened": lambda: _hardened(conn, who, batch),
        "floor": lambda: _floor(conn, who, batch),
    }
    step = steps[kind]()

    def loop(stop_at: float) -> int:
        done = 0
        while time.monotonic() < stop_at:
            finished = step()
            if finished is None:
                break
            done += finished
        return done

    return loop


def _wake_hardened(conn: psycopg.Connection, who: Identity, stop_at: float, jobs: int) -> None:
    """An idle hardened worker: wait for a wake-up (at most `poll`), claim, report the moment held."""
    q = _q("clients/hardened.sql")
    channel = conn.execute(q["worker_setup"], {"name": NAME, "version": VERSION}).fetchone()[2]
    conn.execute(sql.SQL(_q("clients/notify_listen.sql")["listen"]).format(channel=sql.Identifier(channel)))
    poll = 5.0  # hardened.Options().poll: a lost wake-up costs one poll
    held = 0
    while held < jobs and time.monotonic() < stop_at:
        answer = conn.execute(q["find_job"], _params(who, multi=False, batch=1)).fetchone()[0]
        if answer == HARDENED_NO_JOB:
            for _ in conn.notifies(timeout=min(poll, max(0.0, stop_at - time.monotonic())), stop_after=1):
                pass
            continue
        now = time.monotonic()
        for job in json.loads(answer):
            _say({"job_id": job["job_id"], "held": now})
            params = {"uuid": who.uuid, "job_ids": [job["job_id"]], "pipe_job_id": job["pipe_job_id"]}
            conn.execute(q["finish_pipe"], params)
            held += 1


def _wake_notify_listen(conn: psycopg.Connection, who: Identity, stop_at: float, jobs: int) -> None:
    """An idle notify-listen worker: beat, and after `No job found` pause `idle` (1 s), as the original."""
    notify_listen.listen(conn, who)
    conn.isolation_level = psycopg.IsolationLevel.SERIALIZABLE
    idle = notify_listen.Options().idle
    create_job = _q("clients/notify_listen.sql")["create_job"]
    held = 0
    while held < jobs and time.monotonic() < stop_at:
        with conn.transaction():
            heartbeats.send_heartbeat(conn, who)
        answer = next(iter(conn.notifies(timeout=ANSWER_TIMEOUT, stop_after=1)), None)
        if answer is None or answer.payload == notify_listen.NO_JOB:
            time.sleep(min(idle, max(0.0, stop_at - time.monotonic())))  # the original's idle pause
            continue
        now = time.monotonic()
        job = json.loads(answer.payload)
        _say({"job_id": job["job_id"], "held": now})
        _hand_over(conn, create_job, job)
        held += 1


def _say(message: dict) -> None:
    print(json.dumps(message), flush=True)


def main(argv: list[str]) -> int:
    """Run one bench worker (see the module's docstring for the protocol)."""
    kind, database, batch = argv[0], argv[1], int(argv[2])
    if kind.startswith("wake:"):
        conn = server.connect(database, application_name=f"pgqueue bench {kind}")
        who = Identity.new(NAME, VERSION)
        wait = {"wake:hardened": _wake_hardened, "wake:notify-listen": _wake_notify_listen}[kind]
        _say({"ready": True})
        seconds, jobs = sys.stdin.readline().split()[1:3]
        wait(conn, who, time.monotonic() + float(seconds), int(jobs))
        _say({"done": True})
        return 0
    loop = _loop(kind, database, batch)
    _say({"ready": True})
    seconds = float(sys.stdin.readline().split()[1])
    started = time.monotonic()
    done = loop(started + seconds)
    _say({"jobs": done, "started": started, "ended": time.monotonic()})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
