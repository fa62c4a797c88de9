"""One bench worker process: a design's claim-and-finish loop (or a peer's worker), released on cue.

`python -m pgqueue.bench.worker KIND DATABASE BATCH` connects, says `ready`, waits for a line
`go SECONDS` on stdin, then works: it claims and finishes no-op jobs the way that design's worker
does (the same calls, without the kit's event log or simulated work) until the queue has no job
for it or SECONDS have passed, and prints one JSON line: how many jobs it finished and when it
started and stopped (time.monotonic(), one clock for every process on the machine).

The `wake:` kinds wait idle instead, as an idle worker does, and print the moment they held each
job: the bench's producer commits a job at a known moment and reads how long it waited.
The bench's side of that conversation is here too: `started` and `read`.
"""

from __future__ import annotations

import contextlib
import json
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import psycopg
from psycopg import sql

from pgqueue import children, queries, server
from pgqueue.bench import peers
from pgqueue.errors import PgQueueError
from pgqueue.queues import designs, hardened, notify_listen
from pgqueue.queues.client import NO_JOB
from pgqueue.queues.heartbeats import Identity
from pgqueue.queues.worker_base import WorkerBase
from pgqueue.wait import Backoff

NAME, VERSION = "bench_noop", "1.0.0"  # the bench's one-step pipeline (sql/clients/bench.sql)
ANSWER_TIMEOUT = notify_listen.Options().timeout  # seconds a notify-listen beat waits for its answer
READY_TIMEOUT = 60.0  # seconds a worker process may take to start and connect

# Each loop step claims and finishes what one call gives it: the jobs finished, or None when
# the queue had no job for it (the process is done).
Step = Callable[[], "int | None"]


def _retry() -> Backoff:
    """The kit's worker's backoff after a lost race (a serialization failure): waiting is part of the cost."""
    return Backoff(WorkerBase.RETRY_BASE, WorkerBase.RETRY_CAP)


def _serializable(conn: psycopg.Connection, run: Callable[[], None], retry: Backoff) -> None:
    """`run` in one transaction, again after a backoff while SERIALIZABLE says another was in the way."""
    while True:
        try:
            with conn.transaction():
                run()
            retry.reset()
            return
        except psycopg.errors.SerializationFailure:
            time.sleep(retry.next())  # nothing was written; the kit's worker waits and tries again too


def _notify_listen(conn: psycopg.Connection, who: Identity) -> Callable[[], tuple[float, dict] | None]:
    """Beat (SERIALIZABLE, as the kit's worker does by default), hear the job, hand it over.

    The step gives the moment the job was heard and the job, or None: no job.
    """
    c = designs.get("notify-listen").client(conn)
    c.listen(who)
    conn.isolation_level = psycopg.IsolationLevel.SERIALIZABLE
    retry = _retry()

    def job() -> tuple[float, dict] | None:
        _serializable(conn, lambda: c.beat(who), retry)  # another worker won this job: beat again
        answer = next(iter(conn.notifies(timeout=ANSWER_TIMEOUT, stop_after=1)), None)
        if answer is None or answer.payload == NO_JOB:
            return None
        heard, held = time.monotonic(), json.loads(answer.payload)
        _serializable(conn, lambda: c.hand_over(who, [held["job_id"]], [{}]), _retry())
        return heard, held

    return job


def _find_jobs(conn: psycopg.Connection, who: Identity, design: str, batch: int) -> Step:
    """find_job for what one call gives, each job then finished as that design's worker does."""
    c = designs.get(design).client(conn)

    def step() -> int | None:
        if (answer := c.ask(who, batch=batch)) == NO_JOB:
            return None
        jobs = json.loads(answer)
        if len(jobs) > 1:  # a hardened batch of last-step jobs: finish_pipes, once for all of them
            c.finish_all(who, [job["job_id"] for job in jobs])
        else:
            c.finish(who, [jobs[0]["job_id"]], jobs[0]["pipe_job_id"])
        return len(jobs)

    return step


def _floor(conn: psycopg.Connection, who: Identity, batch: int) -> Step:
    """Claim up to `batch` rows with SKIP LOCKED, then mark them done: two commits per claim."""
    q = queries.load("clients/bench.sql")

    def step() -> int | None:
        ids = [row[0] for row in conn.execute(q["floor_claim_batch"], {"uuid": who.uuid, "batch": batch})]
        if not ids:
            return None
        conn.execute(q["floor_finish"], {"ids": ids})
        return len(ids)

    return step


def _step(kind: str, conn: psycopg.Connection, who: Identity, batch: int) -> Step:
    if kind == "notify-listen":
        job = _notify_listen(conn, who)
        return lambda: None if job() is None else 1
    if kind == "floor":
        return _floor(conn, who, batch)
    return _find_jobs(conn, who, kind, batch)


def _work(kind: str, database: str, batch: int) -> Callable[[float], int]:
    """Connect and prepare; the loop that works until `stop_at` and returns the jobs it finished."""
    if kind.startswith("peer:"):
        peer = next(p for p in peers.PEERS if p.name == kind.removeprefix("peer:"))
        if why := peers.missing(peer):  # it imports the peer too: not in the timed run
            raise SystemExit(why)
        uri = server.resolve().uri_for(database)
        return lambda stop_at: peers.work(peer, uri, stop_at)
    conn = server.connect(database, application_name=f"pgqueue bench {kind}")
    step = _step(kind, conn, Identity.new(NAME, VERSION), batch)

    def loop(stop_at: float) -> int:
        done = 0
        while time.monotonic() < stop_at and (finished := step()) is not None:
            done += finished
        return done

    return loop


def _wake_hardened(conn: psycopg.Connection, who: Identity, stop_at: float, jobs: int) -> None:
    """An idle hardened worker: wait for a wake-up (at most `poll`), claim, report the moment held."""
    c = designs.get("hardened").client(conn)
    channel = conn.execute(c.q["worker_setup"], {"name": NAME, "version": VERSION}).fetchone()[2]
    listen = queries.load("clients/notify_listen.sql")["listen"]
    conn.execute(sql.SQL(listen).format(channel=sql.Identifier(channel)))
    poll = hardened.Options().poll  # a lost wake-up costs one poll
    held = 0
    while held < jobs and time.monotonic() < stop_at:
        if (answer := c.ask(who)) == NO_JOB:
            for _ in conn.notifies(timeout=min(poll, max(0.0, stop_at - time.monotonic())), stop_after=1):
                pass
            continue
        now = time.monotonic()
        for job in json.loads(answer):
            _say({"job_id": job["job_id"], "held": now})
            c.finish(who, [job["job_id"]], job["pipe_job_id"])
            held += 1


def _wake_notify_listen(conn: psycopg.Connection, who: Identity, stop_at: float, jobs: int) -> None:
    """An idle notify-listen worker: beat, and after `No job found` pause `idle` (1 s), as the original."""
    job = _notify_listen(conn, who)
    idle = notify_listen.Options().idle
    held = 0
    while held < jobs and time.monotonic() < stop_at:
        if (got := job()) is None:
            time.sleep(min(idle, max(0.0, stop_at - time.monotonic())))  # the original's idle pause
            continue
        _say({"job_id": got[1]["job_id"], "held": got[0]})
        held += 1


def _say(message: dict) -> None:
    print(json.dumps(message), flush=True)


def main(argv: list[str]) -> int:
    """Run one bench worker (see the module's docstring for the protocol)."""
    kind, database, batch = argv[0], argv[1], int(argv[2])
    if kind.startswith("wake:"):
        conn = server.connect(database, application_name=f"pgqueue bench {kind}")
        wait = {"wake:hardened": _wake_hardened, "wake:notify-listen": _wake_notify_listen}[kind]
        _say({"ready": True})
        seconds, jobs = sys.stdin.readline().split()[1:3]
        wait(conn, Identity.new(NAME, VERSION), time.monotonic() + float(seconds), int(jobs))
        _say({"done": True})
        return 0
    loop = _work(kind, database, batch)
    _say({"ready": True})
    seconds = float(sys.stdin.readline().split()[1])
    started = time.monotonic()
    done = loop(started + seconds)
    _say({"jobs": done, "started": started, "ended": time.monotonic()})
    return 0


def argv(kind: str, database: str, batch: int) -> list[str]:
    """The command line of one worker process of `kind` on `database`."""
    return [sys.executable, "-m", "pgqueue.bench.worker", kind, database, str(batch)]


@contextlib.contextmanager
def started(argvs: list[list[str]]) -> Iterator[list[subprocess.Popen]]:
    """Worker processes (they die with this one), each ready (connected) when the block starts."""
    procs = []
    try:
        for each in argvs:
            procs.append(
                children.spawn(each, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            )
        for proc in procs:
            read(proc, "ready", READY_TIMEOUT)
        yield procs
    finally:
        for proc in procs:
            children.stop(proc)
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                with contextlib.suppress(OSError):
                    pipe.close()


def read(proc: subprocess.Popen, what: str, timeout: float) -> dict:
    """The worker's next JSON line within `timeout` seconds, or an error saying what it did instead.

    The worker writes one whole line per message and flushes it, and nothing more until it is
    asked again, so a line is never half in the pipe's buffer while select waits.
    """
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else b""
    if not ready:
        raise PgQueueError(f"a bench worker did not say {what} within {timeout:g} s; it was stopped")
    if not line:
        proc.wait(READY_TIMEOUT)
        said = (proc.stderr.read().decode(errors="replace").strip().splitlines() or ["(nothing)"])[-1]
        raise PgQueueError(f"a bench worker exited ({proc.returncode}) before it said {what}: {said}")
    return json.loads(line)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
