"""Lesson 10's experiments: one job handed to two workers, callers queueing behind one row lock, a pipe
job finished twice, an incomplete set hiding complete ones; each forced on two or more connections, or
tried many times by racers a barrier releases together."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import dataclass

import psycopg

from pgqueue import queries
from pgqueue.check.core import together
from pgqueue.lab.races import waiting_on_lock
from pgqueue.queues import client, designs, labs
from pgqueue.queues.heartbeats import Identity
from pgqueue.wait import until


def _q() -> queries.Queries:
    return queries.load("clients/races.sql")


RACE_DESIGNS = ("single-call", "hardened")  # the designs with pipe jobs, find_job and finish_pipe


def _client(poc: str, conn: psycopg.Connection) -> client.Client:
    """The design client of `poc` on `conn`; a design without pipe jobs and find_job is refused."""
    if poc not in RACE_DESIGNS:
        raise ValueError(f"this race needs pipe jobs and find_job: lab {poc!r} is none of {RACE_DESIGNS}")
    return designs.get(poc).client(conn)


def _clients(stack: contextlib.ExitStack, poc: str, n: int) -> list[client.Client]:
    """`n` clients of `poc`, each on its own connection, closed with `stack`."""
    return [designs.get(poc).client(stack.enter_context(labs.connect(poc))) for _ in range(n)]


def _raise_first(results: list) -> list:
    """The racers' results, once none raised (else the first exception, raised here)."""
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


def _job_ids(answer: str) -> list[int]:
    """The jobs a find_job answer hands out ([] for any other answer)."""
    return [job["job_id"] for job in json.loads(answer)] if answer.startswith("[") else []


def _finish(c: client.Client, who: Identity, ids: list[int], pipe_job_id: int) -> str:
    """finish_pipe as `who`: 'accepted', or 'refused: ' and PostgreSQL's words."""
    try:
        c.finish(who, ids, pipe_job_id)
    except psycopg.Error as exc:
        return f"refused: {exc.diag.message_primary or exc}"
    return "accepted"


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

    Each racer beats with the worker's own code (SERIALIZABLE and its retry loop, or READ COMMITTED
    as `--no-serializable` runs it) on its own LISTENing connection. Needs `client.fresh_lab` first.
    """
    from pgqueue.queues import notify_listen

    opts = notify_listen.Options(serializable=serializable)
    level = psycopg.IsolationLevel.SERIALIZABLE if serializable else psycopg.IsolationLevel.READ_COMMITTED
    racers = [notify_listen.Worker(Identity.new("first_process", "1.0.0"), opts) for _ in range(workers)]
    doubled = handed = 0
    with contextlib.ExitStack() as stack:
        ears = _clients(stack, notify_listen.POC, workers)
        for racer, ear in zip(racers, ears, strict=True):
            ear.conn.isolation_level = level
            ear.listen(racer.who)
        own = _clients(stack, notify_listen.POC, 1)[0]
        started = time.monotonic()
        for _ in range(trials):
            job_id = own.submit(pipe_id=1)

            def beat(i: int) -> str:
                if not racers[i].heartbeat(ears[i].conn):
                    return ""
                heard = [n.payload for n in ears[i].conn.notifies(timeout=opts.timeout, stop_after=1)]
                return heard[0] if heard else ""

            answers = _raise_first(together(workers, beat))
            got = sum(1 for a in answers if a.startswith("{") and json.loads(a)["job_id"] == job_id)
            handed += got
            doubled += got > 1
        seconds = time.monotonic() - started
    retries = sum(r.log.kinds().count("retry") for r in racers)
    name = f"notify-listen, {'SERIALIZABLE' if serializable else 'READ COMMITTED (--no-serializable)'}"
    return HandoutTrials(name, trials, workers, doubled, handed, retries, seconds)


def hardened_handout_trials(trials: int = 30, workers: int = 6) -> HandoutTrials:
    """The same race on the hardened lab: one new job, `workers` find_job calls released together; the
    callers handed it and the attempts recorded. Needs `client.fresh_lab("hardened")` first."""
    who = [Identity.new("first_process", "1.9.2") for _ in range(workers)]
    doubled = handed = attempts = 0
    with contextlib.ExitStack() as stack:
        own, *callers = _clients(stack, "hardened", workers + 1)
        started = time.monotonic()
        for _ in range(trials):
            own.submit(pipe_id=2)
            answers = _raise_first(together(workers, lambda i: callers[i].ask(who[i])))
            jobs = [job_id for a in answers for job_id in _job_ids(a)]
            handed += len(jobs)
            doubled += len(jobs) != len(set(jobs))
            for job_id in set(jobs):
                attempts += own.conn.execute(_q()["race_attempts_of"], {"job_id": job_id}).fetchone()[0]
        seconds = time.monotonic() - started
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
    """`callers` workers ask find_job together while one transaction holds the first job claimed, with
    `callers` more jobs waiting; the holder commits once each has answered or waits for a lock.
    Needs `client.fresh_lab(poc)` first."""
    who = [Identity.new("first_process", "1.9.2") for _ in range(callers)]
    answered: list[float] = [0.0] * callers
    jobs = [0] * callers
    with contextlib.ExitStack() as stack:
        own = _client(poc, stack.enter_context(labs.connect(poc)))
        holder, *asking = _clients(stack, poc, callers + 1)
        pids = [c.conn.info.backend_pid for c in asking]
        for _ in range(callers + 1):
            own.submit(pipe_id=2)

        def call(i: int) -> None:
            start = time.monotonic()
            answer = asking[i].ask(who[i])
            answered[i] = (time.monotonic() - start) * 1000
            jobs[i] = (_job_ids(answer) or [0])[0]

        def waiting(i: int) -> bool:
            return waiting_on_lock(pids[i], conn=own.conn)

        results: list[object] = []
        with holder.conn.transaction():
            holder.claim(Identity.new("first_process", "1.9.2"))
            racer = threading.Thread(target=lambda: results.extend(together(callers, call)))
            racer.start()
            until(
                lambda: all(answered[i] or waiting(i) for i in range(callers)),
                15,
                "every caller answered or waiting for a lock",
            )
            waited = sum(1 for i in range(callers) if not answered[i] and waiting(i))
            while_held = sum(1 for a in answered if a)
        racer.join(30)
        _raise_first(results)
    name = "single-call (FOR UPDATE)" if poc == "single-call" else "hardened (FOR UPDATE SKIP LOCKED)"
    return LockQueue(name, callers, waited, while_held, tuple(answered), tuple(jobs))


# --- 3. a pipe job finished twice ------------------------------------------------------------

PLAIN_CHAIN = (("first_process", "1.9.2"), ("second_process", "2.2.0"), ("third_process", "5.3.0"))


def _to_last_step(c: client.Client, who_of: dict[str, Identity]) -> list[int]:
    """Run the newest pipeline-2 pipe job by hand up to its last step; the last step's job ids, held."""
    for name, version in PLAIN_CHAIN:
        who = who_of.setdefault(name, Identity.new(name, version))
        ids = [job["job_id"] for job in c.claim(who)]
        if (name, version) != PLAIN_CHAIN[-1]:
            c.hand_over(who, ids, [{}])
    return ids


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
    """A worker's finish_pipe sent twice (a repeat after a lost connection), the second while the first's
    transaction is open; then a worker that never claimed a request's last job finishes it.

    The request has a pipe job of pipeline 2 (order 1), run by hand to its last step, and one of
    pipeline 4 (order 2), which must start once. Needs `client.fresh_lab(poc)` first.
    """
    who_of: dict[str, Identity] = {}
    with contextlib.ExitStack() as stack:
        own = _client(poc, stack.enter_context(labs.connect(poc)))
        a, b = _clients(stack, poc, 2)
        request = own.next_request_id()
        pipe_job, next_order = own.submit(2, request), own.submit(4, request)
        last = _to_last_step(own, who_of)
        finisher = who_of["third_process"]
        heard_b: list[str] = []
        racer = threading.Thread(target=lambda: heard_b.append(_finish(b, finisher, last, pipe_job)))
        with a.conn.transaction():
            heard_a = _finish(a, finisher, last, pipe_job)
            racer.start()
            until(
                lambda: bool(heard_b) or waiting_on_lock(b.conn.info.backend_pid, conn=own.conn),
                10,
                "the second finish_pipe answering or waiting for a lock",
            )
            waited = not heard_b
        racer.join(10)
        finished = own.conn.execute(_q()["race_pipe_job_finished"], {"pipe_job_id": pipe_job}).fetchone()[0]
        started = own.conn.execute(_q()["race_entry_jobs_of"], {"pipe_job_id": next_order}).fetchone()[0]
        other = own.submit(2)
        stranger = _finish(own, Identity.new("third_process", "5.3.0"), _to_last_step(own, who_of), other)
    return FinishTwice(poc, heard_a, heard_b[0] if heard_b else "", waited, finished, started, stranger)


# --- 4. an incomplete set hiding complete ones -----------------------------------------------

README_FLOW = (("assigner", "1.0.0"), ("wearing_compliance", "1.5.2"), ("classification", "1.0.0"))
GATHERER = ("movemonitor", "1.0.0")


def _gather_set(c: client.Client, priority: int, done: int) -> list[int]:
    """A pipe job of the README's flow (pipeline 5) run by hand until `done` of its four parallel
    classification jobs have handed their result to the gatherer; those gatherer jobs' ids."""
    c.submit(5, priority=priority)
    assigner, compliance, classify = (Identity.new(n, v) for n, v in README_FLOW)
    c.hand_over(assigner, [job["job_id"] for job in c.claim(assigner)], [{}])
    c.hand_over(compliance, [job["job_id"] for job in c.claim(compliance)], [{}] * 4)
    made = []
    for _ in range(done):
        (job,) = c.claim(classify)
        made += c.hand_over(classify, [job["job_id"]], [{}])
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
    """A complete set (priority 100) and, more urgent (priority 1), a set with one of four done; the
    gatherer asks as the original picked (lesson 06's `original_pick`: the best set first, tested for
    completeness after) or, in hardened, find_job in multi mode. Needs `client.fresh_lab(poc)` first."""
    with labs.connect(poc) as conn:
        c = _client(poc, conn)
        complete = _gather_set(c, priority=100, done=4)
        incomplete = _gather_set(c, priority=1, done=1)
        whole = True
        if poc == "single-call":  # single-call's find_job has the later fix: ask the original's pick
            pick = labs.step(poc, "gather").lesson["original_pick"]
            _best, whole = conn.execute(pick, {"name": GATHERER[0], "version": GATHERER[1]}).fetchone()
        # the original tested its one pick, found it incomplete: 'No job found'
        handed = _job_ids(c.ask(Identity.new(*GATHERER), multi=True)) if whole else []
    return HiddenSet(poc, tuple(complete), tuple(incomplete), tuple(sorted(handed)))
