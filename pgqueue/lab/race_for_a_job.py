"""Lesson 10's experiments: one job handed to two workers, callers queueing behind one row lock, a pipe
job finished twice, an incomplete set hiding complete ones; each forced on two or more connections, or
tried many times by racers a barrier releases together."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass

import psycopg
from psycopg.types.json import Jsonb

from pgqueue import queries
from pgqueue.check.core import together
from pgqueue.lab.races import waiting_on_lock
from pgqueue.queues import labs
from pgqueue.queues.heartbeats import Identity
from pgqueue.wait import until


def _q() -> queries.Queries:
    return queries.load("clients/races.sql")


RACE_DESIGNS = ("single-call", "hardened")  # the designs with pipe jobs, find_job and finish_pipe
NO_JOB_ANSWERS = ("No job found", "Retry, I lost the job race", "kill")


def _calls(poc: str) -> queries.Queries:
    """What a worker of `poc` sends (single-call's or hardened's calls)."""
    if poc not in RACE_DESIGNS:
        raise ValueError(f"this race needs pipe jobs and find_job: lab {poc!r} is none of {RACE_DESIGNS}")
    return queries.load(f"clients/{poc.replace('-', '_')}.sql")


def race_lab(poc: str) -> None:
    """Rebuild lab `poc` with its example pipelines and no request yet: a clean field for a race."""
    labs.reset(poc)
    with labs.connect(poc) as conn:
        conn.execute(labs.step(poc, "pipelines").example_sql)


def _ask(conn: psycopg.Connection, poc: str, who: Identity, multi: bool = False) -> str:
    """One find_job call of `who`, as its design's worker makes it; the raw answer."""
    params = {
        "uuid": who.uuid,
        "server": who.server,
        "name": who.name,
        "version": who.version,
        "multi": multi,
        "batch": 1,
    }
    return conn.execute(_calls(poc)["find_job"], params).fetchone()[0]


def _claim(conn: psycopg.Connection, poc: str, who: Identity, multi: bool = False) -> list[dict]:
    answer = _ask(conn, poc, who, multi)
    if answer in NO_JOB_ANSWERS:
        raise RuntimeError(f"{who.name} {who.version} expected a job in lab {poc}, heard {answer!r}")
    return json.loads(answer)


def _hand_over(conn: psycopg.Connection, poc: str, who: Identity, ids: list[int], jobs: int = 1) -> list[int]:
    params = {"uuid": who.uuid, "job_ids": ids, "payloads": Jsonb([{}] * jobs)}
    return conn.execute(_calls(poc)["create_jobs"], params).fetchone()[0]


def _finish_pipe(conn: psycopg.Connection, poc: str, who: Identity, ids: list[int], pipe_job_id: int) -> str:
    """finish_pipe as `who`: 'accepted', or 'refused: ' and PostgreSQL's words."""
    try:
        conn.execute(
            _calls(poc)["finish_pipe"], {"uuid": who.uuid, "job_ids": ids, "pipe_job_id": pipe_job_id}
        )
    except psycopg.Error as exc:
        return f"refused: {exc.diag.message_primary or exc}"
    return "accepted"


def _submit(
    conn: psycopg.Connection, pipe_id: int, request_id: int | None = None, priority: int = 100
) -> int:
    if request_id is None:
        request_id = conn.execute(_q()["race_next_pipe_request"]).fetchone()[0]
    params = {"request_id": request_id, "pipe_id": pipe_id, "priority": priority}
    return conn.execute(_q()["race_submit"], params).fetchone()[0]


# --- 1. one job, two owners ------------------------------------------------------------------


@dataclass(frozen=True)
class HandoutTrials:
    """How often one job went to more than one of `workers` racers released together."""

    design: str
    trials: int
    workers: int
    doubled: int  # trials whose job more than one worker was handed
    handed: int  # hand-outs in all (equal to `trials` when nothing doubles)
    retries: int  # serialization failures retried (SERIALIZABLE only)
    seconds: float  # the trials' time, end to end
    attempts: int = 0  # hardened: attempts recorded (one per job when nothing doubles)

    def row(self) -> dict[str, object]:
        """The counts, for one row of a table of designs."""
        return {
            "trials": self.trials,
            "workers": self.workers,
            "doubled": self.doubled,
            "doubled %": round(100 * self.doubled / self.trials, 1) if self.trials else 0.0,
            "hand-outs": self.handed,
            "retries per job": round(self.retries / self.trials, 2) if self.trials else 0.0,
            "jobs per second": round(self.trials / self.seconds, 1) if self.seconds else 0.0,
        }


def notify_listen_handout_trials(
    trials: int = 30, workers: int = 6, serializable: bool = False
) -> HandoutTrials:
    """`trials` times: one new job, then `workers` notify-listen workers beat together for it.

    Each racer is a real notify-listen worker of first_process 1.0.0 on its own LISTENing
    connection, beating with the worker's own code (SERIALIZABLE and its retry loop, or READ
    COMMITTED as `--no-serializable` runs it). A barrier releases the beats together; each
    racer then reads its one answer. Counts the trials whose job more than one racer heard.
    Needs the notify-listen lab with its example pipelines (`race_lab`, `labs.reset`).
    """
    from pgqueue.queues import notify_listen

    poc = notify_listen.POC
    opts = notify_listen.Options(serializable=serializable)
    level = psycopg.IsolationLevel.SERIALIZABLE if serializable else psycopg.IsolationLevel.READ_COMMITTED
    racers = [notify_listen.Worker(Identity.new("first_process", "1.0.0"), opts) for _ in range(workers)]
    conns = [labs.connect(poc) for _ in range(workers)]
    doubled = handed = 0
    try:
        for racer, conn in zip(racers, conns, strict=True):
            conn.isolation_level = level
            notify_listen.listen(conn, racer.who)
        started = time.monotonic()
        with labs.connect(poc) as own:
            for _ in range(trials):
                request = own.execute(_q()["race_next_request"]).fetchone()[0]
                job_id = own.execute(_q()["race_notify_job"], {"request_id": request}).fetchone()[0]

                def beat(i: int) -> str:
                    if not racers[i].heartbeat(conns[i]):
                        return ""
                    heard = [n.payload for n in conns[i].notifies(timeout=opts.timeout, stop_after=1)]
                    return heard[0] if heard else ""

                answers = together(workers, beat)
                failed = [a for a in answers if isinstance(a, BaseException)]
                if failed:
                    raise failed[0]
                got = sum(
                    1
                    for a in answers
                    if isinstance(a, str) and a.startswith("{") and json.loads(a)["job_id"] == job_id
                )
                handed += got
                doubled += got > 1
        seconds = time.monotonic() - started
    finally:
        for conn in conns:
            conn.close()
    retries = sum(r.log.kinds().count("retry") for r in racers)
    name = f"notify-listen, {'SERIALIZABLE' if serializable else 'READ COMMITTED (--no-serializable)'}"
    return HandoutTrials(name, trials, workers, doubled, handed, retries, seconds)


def hardened_handout_trials(trials: int = 30, workers: int = 6) -> HandoutTrials:
    """The same race on the hardened lab: one new job, `workers` find_job calls released together.

    Counts the callers handed the job, and the attempts job_attempts recorded for it.
    Needs the hardened lab with its example pipelines (`race_lab`).
    """
    poc = "hardened"
    who = [Identity.new("first_process", "1.9.2") for _ in range(workers)]
    conns = [labs.connect(poc) for _ in range(workers)]
    doubled = handed = attempts = 0
    try:
        started = time.monotonic()
        with labs.connect(poc) as own:
            for _ in range(trials):
                _submit(own, pipe_id=2)
                answers = together(workers, lambda i: _ask(conns[i], poc, who[i]))
                jobs = [
                    json.loads(a)[0]["job_id"] for a in answers if isinstance(a, str) and a.startswith("[")
                ]
                errors = [a for a in answers if isinstance(a, BaseException)]
                if errors:
                    raise errors[0]
                handed += len(jobs)
                doubled += len(jobs) != len(set(jobs))
                for job_id in set(jobs):
                    attempts += own.execute(_q()["race_attempts_of"], {"job_id": job_id}).fetchone()[0]
        seconds = time.monotonic() - started
    finally:
        for conn in conns:
            conn.close()
    return HandoutTrials(
        "hardened (SKIP LOCKED lease)", trials, workers, doubled, handed, 0, seconds, attempts
    )


# --- 2. callers queueing behind one row lock -------------------------------------------------


@dataclass(frozen=True)
class LockQueue:
    """What `callers` find_job calls met while another transaction held the first job's row lock."""

    design: str
    callers: int
    waited: int  # callers seen waiting for a lock (pg_stat_activity.wait_event_type = 'Lock')
    answered_while_held: int  # callers answered before the holder committed
    waits_ms: tuple[float, ...]  # each caller's time from its release to its answer
    jobs: tuple[int, ...]  # the job each caller was handed (0 for none)

    def row(self) -> dict[str, object]:
        """The counts and times, for one row of a table of designs."""
        ordered = sorted(self.waits_ms)
        return {
            "callers": self.callers,
            "waited on the lock": self.waited,
            "answered while it was held": self.answered_while_held,
            "shortest ms": round(ordered[0], 1),
            "longest ms": round(ordered[-1], 1),
            "distinct jobs handed": len({j for j in self.jobs if j}),
        }


def lock_queue(poc: str, callers: int = 5) -> LockQueue:
    """`callers` workers ask find_job together while one transaction holds the first job claimed.

    One holder claims a job of first_process 1.9.2 inside a transaction it keeps open; then a
    barrier releases the callers, each on its own connection, with `callers` more jobs waiting.
    We wait until every caller has either answered or is waiting for a lock, count the waiting
    ones, and only then let the holder commit. Needs `race_lab(poc)` first.
    """
    _calls(poc)  # refuses a design without find_job
    who = [Identity.new("first_process", "1.9.2") for _ in range(callers)]
    conns = [labs.connect(poc) for _ in range(callers)]
    pids = [c.info.backend_pid for c in conns]
    answered: list[float] = [0.0] * callers
    jobs = [0] * callers
    try:
        with labs.connect(poc) as own, labs.connect(poc) as holder:
            for _ in range(callers + 1):
                _submit(own, pipe_id=2)

            def call(i: int) -> None:
                start = time.monotonic()
                answer = _ask(conns[i], poc, who[i])
                answered[i] = (time.monotonic() - start) * 1000
                jobs[i] = json.loads(answer)[0]["job_id"] if answer.startswith("[") else 0

            results: list[object] = []
            with holder.transaction():
                _claim(holder, poc, Identity.new("first_process", "1.9.2"))
                racer = threading.Thread(target=lambda: results.extend(together(callers, call)))
                racer.start()
                until(
                    lambda: all(answered[i] or waiting_on_lock(pids[i], conn=own) for i in range(callers)),
                    15,
                    "every caller answered or waiting for a lock",
                )
                waited = sum(
                    1 for i in range(callers) if not answered[i] and waiting_on_lock(pids[i], conn=own)
                )
                while_held = sum(1 for a in answered if a)
            racer.join(30)
            failed = [r for r in results if isinstance(r, BaseException)]
            if failed:
                raise failed[0]
    finally:
        for conn in conns:
            conn.close()
    name = "single-call (FOR UPDATE)" if poc == "single-call" else "hardened (FOR UPDATE SKIP LOCKED)"
    return LockQueue(name, callers, waited, while_held, tuple(answered), tuple(jobs))


# --- 3. a pipe job finished twice ------------------------------------------------------------

PLAIN_CHAIN = (("first_process", "1.9.2"), ("second_process", "2.2.0"), ("third_process", "5.3.0"))


def _to_last_step(conn: psycopg.Connection, poc: str, who_of: dict[str, Identity]) -> list[int]:
    """Run the newest pipeline-2 pipe job by hand up to its last step; the last step's job ids, held."""
    for name, version in PLAIN_CHAIN[:-1]:
        ids = [
            job["job_id"] for job in _claim(conn, poc, who_of.setdefault(name, Identity.new(name, version)))
        ]
        _hand_over(conn, poc, who_of[name], ids)
    name, version = PLAIN_CHAIN[-1]
    return [job["job_id"] for job in _claim(conn, poc, who_of.setdefault(name, Identity.new(name, version)))]


@dataclass(frozen=True)
class FinishTwice:
    """Two finish_pipe calls of the same jobs, the second sent while the first is still open."""

    design: str
    first: str  # what the first call heard
    second: str  # what the second heard
    second_waited: bool  # the second waited for the first's row lock
    pipe_job_finished: bool
    next_order_started: int  # entry jobs the request's order-2 pipe job got (1 = once)
    stranger: str  # what a worker that never held the jobs heard when it finished them

    def row(self) -> dict[str, object]:
        """What happened, for one row of a table of designs."""
        return {
            "first finish_pipe": self.first,
            "second (same jobs, same worker)": self.second,
            "second waited for the first": self.second_waited,
            "order 2 started (times)": self.next_order_started,
            "finish_pipe by a worker that never held the job": self.stranger,
        }


def finish_twice(poc: str) -> FinishTwice:
    """A worker's finish_pipe sent twice (a repeat after a lost connection), both at once.

    A request gets a pipe job of pipeline 2 (order 1) and one of pipeline 4 (order 2); pipeline
    2's jobs run by hand to third_process, its last step. Then the forced schedule: the first
    finish_pipe runs in a transaction kept open; the second, on another connection, waits for
    a row lock (or answers at once); then the first commits and the second goes on. Afterwards
    a second request runs to its last step, and a worker that never claimed its job finishes it.
    Needs `race_lab(poc)` first.
    """
    who_of: dict[str, Identity] = {}
    with labs.connect(poc) as conn, labs.connect(poc) as a, labs.connect(poc) as b:
        request = conn.execute(_q()["race_next_pipe_request"]).fetchone()[0]
        pipe_job = _submit(conn, 2, request)
        next_order = _submit(conn, 4, request)
        last = _to_last_step(conn, poc, who_of)
        finisher = who_of["third_process"]
        heard_b: list[str] = []
        racer = threading.Thread(
            target=lambda: heard_b.append(_finish_pipe(b, poc, finisher, last, pipe_job))
        )
        with a.transaction():
            heard_a = _finish_pipe(a, poc, finisher, last, pipe_job)
            racer.start()
            until(
                lambda: bool(heard_b) or waiting_on_lock(b.info.backend_pid, conn=conn),
                10,
                "the second finish_pipe answering or waiting for a lock",
            )
            waited = not heard_b
        racer.join(10)
        finished = conn.execute(_q()["race_pipe_job_finished"], {"pipe_job_id": pipe_job}).fetchone()[0]
        started = conn.execute(_q()["race_entry_jobs_of"], {"pipe_job_id": next_order}).fetchone()[0]

        other = _submit(conn, 2)
        held = _to_last_step(conn, poc, who_of)
        stranger = _finish_pipe(conn, poc, Identity.new("third_process", "5.3.0"), held, other)
    return FinishTwice(poc, heard_a, heard_b[0] if heard_b else "", waited, finished, started, stranger)


# --- 4. an incomplete set hiding complete ones -----------------------------------------------

README_FLOW = (("assigner", "1.0.0"), ("wearing_compliance", "1.5.2"), ("classification", "1.0.0"))
GATHERER = ("movemonitor", "1.0.0")


def _gather_set(conn: psycopg.Connection, poc: str, priority: int, done: int) -> list[int]:
    """A pipe job of the README's flow (pipeline 5) run by hand until `done` of its four parallel
    classification jobs have handed their result to the gatherer; those gatherer jobs' ids."""
    _submit(conn, 5, priority=priority)
    (assigner, compliance, classify) = (Identity.new(n, v) for n, v in README_FLOW)
    _hand_over(conn, poc, assigner, [job["job_id"] for job in _claim(conn, poc, assigner)])
    _hand_over(conn, poc, compliance, [job["job_id"] for job in _claim(conn, poc, compliance)], jobs=4)
    made = []
    for _ in range(done):
        (job,) = _claim(conn, poc, classify)
        made += _hand_over(conn, poc, classify, [job["job_id"]])
    return made


@dataclass(frozen=True)
class HiddenSet:
    """What a gatherer is handed when an urgent incomplete set stands before a complete one."""

    design: str
    complete: tuple[int, ...]  # the gatherer jobs of the complete set (priority 100)
    incomplete: tuple[int, ...]  # those of the urgent set, one of four parallel jobs done
    handed: tuple[int, ...]  # what the gatherer got (empty: 'No job found')

    def row(self) -> dict[str, object]:
        """What the gatherer got, for one row of a table of designs."""
        return {
            "complete set waiting": list(self.complete),
            "incomplete set (more urgent)": list(self.incomplete),
            "the gatherer got": list(self.handed) or "nothing",
        }


def hidden_set(poc: str) -> HiddenSet:
    """A complete set (priority 100) and, more urgent (priority 1), a set with one of four done.

    In single-call the gatherer's pick is the original's (lesson 06's `original_pick`: the best
    set first, tested for completeness after); in hardened it is find_job in multi mode, as
    its gathering worker calls it. Needs `race_lab(poc)` first.
    """
    with labs.connect(poc) as conn:
        complete = _gather_set(conn, poc, priority=100, done=4)
        incomplete = _gather_set(conn, poc, priority=1, done=1)
        whole = True
        if poc == "single-call":  # single-call's find_job has the later fix: ask the original's pick
            pick = labs.step(poc, "gather").lesson["original_pick"]
            _best, whole = conn.execute(pick, {"name": GATHERER[0], "version": GATHERER[1]}).fetchone()
        handed: list[int] = []  # the original tested its one pick, found it incomplete: 'No job found'
        if whole:
            answer = _ask(conn, poc, Identity.new(*GATHERER), multi=True)
            handed = [job["job_id"] for job in json.loads(answer)] if answer.startswith("[") else []
    return HiddenSet(poc, tuple(complete), tuple(incomplete), tuple(sorted(handed)))
