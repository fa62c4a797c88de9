"""Lesson 09's experiments: a worker SIGKILLed after its claim, a NOTIFY nobody hears; hardened survives."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

from pgqueue import queries
from pgqueue.lab import demo
from pgqueue.queues import client, designs, fleet, hardened, labs, single_call
from pgqueue.queues.heartbeats import Identity
from pgqueue.wait import until

if TYPE_CHECKING:
    import pandas as pd


def _q() -> queries.Queries:
    return queries.load("clients/crash.sql")


ORIGINALS = ("notify-listen", "single-call")
# the step the victim runs: the first of the request's first pipeline, in each design
FIRST_STEP = {
    "notify-listen": ("first_process", "1.0.0"),
    "single-call": ("first_process", "1.9.2"),
    "hardened": ("first_process", "1.9.2"),
}
# the request: notify-listen's example pipeline; elsewhere pipeline 2 and, in order 2, pipeline 4
REQUEST_PIPES = {"notify-listen": (1,), "single-call": (2, 4), "hardened": (2, 4)}
REQUEST_ID = 9


def fast(poc: str, work: tuple[float, float] = (0.0, 0.02)):
    """Worker options that poll often and work briefly, so a lesson sees many polls in seconds."""
    module = designs.get(poc).worker()
    if poc == "notify-listen":
        return module.Options(timeout=1.0, idle=0.2, recover=0.5, work=work)
    return module.Options(poll=0.2 if poc == "single-call" else 0.5, work=work)


def slow(poc: str):
    """Options of a victim: 30 s of work per job, so it surely holds its job when it is killed."""
    return fast(poc, work=(30.0, 30.0))


def held_by(poc: str, uuid: str) -> list[int]:
    """The unfinished jobs worker `uuid` holds."""
    with labs.connect(poc) as conn:
        return [row[0] for row in conn.execute(_q()["held_by"], {"uuid": uuid})]


def job_state(poc: str, job_id: int) -> dict:
    """One job: its process, who holds it and since when, whether it finished."""
    with labs.connect(poc) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(_q()["job_state"], {"job_id": job_id}).fetchone()


def silent_for(poc: str, uuid: str) -> float | None:
    """Seconds since worker `uuid` last beat (None: it never did)."""
    with labs.connect(poc) as conn:
        row = conn.execute(_q()["silent_for"], {"uuid": uuid}).fetchone()
    return row[0] if row else None


def request(poc: str, request_id: int = REQUEST_ID) -> pd.DataFrame:
    """A request's work: its jobs (notify-listen), or its pipe jobs with their open jobs."""
    name = "request_jobs" if poc == "notify-listen" else "request_pipe_jobs"
    return labs.frame(poc, _q()[name], request_id=request_id)


def events(workers: fleet.Fleet, uuid: str, kinds: tuple[str, ...], since: float, text: str = "") -> int:
    """How many events of `kinds` (whose detail holds `text`) worker `uuid` reported after `since`."""
    return sum(
        1
        for e in workers.member(uuid).events(workers.log)
        if e.kind in kinds and e.at > since and text in e.detail
    )


def settle(
    workers: fleet.Fleet, polls: int = 3, timeout: float = 30.0, kinds: tuple[str, ...] = ("idle",)
) -> float:
    """Wait until nothing moves: every live worker polled `polls` times (events of `kinds`) since the
    lab's job counts last changed. The seconds it took; Timeout if work still moves at the deadline."""
    counts = designs.get(workers.poc).worker().job_counts
    began = time.time()
    seen: dict = {"counts": None, "since": began}

    def quiet() -> bool:
        now = counts()
        if now != seen["counts"]:
            seen.update(counts=now, since=time.time())
            return False
        live = workers.members(alive=True)
        return bool(live) and all(events(workers, m.who.uuid, kinds, seen["since"]) >= polls for m in live)

    until(quiet, timeout, f"every worker polling {polls} times with nothing moving", interval=0.1)
    return time.time() - began


def kill_holding(
    workers: fleet.Fleet, name: str, version: str, timeout: float = 30.0
) -> tuple[str, list[int]]:
    """Start one slow process worker, SIGKILL it once it holds a job; its uuid and the jobs it held."""
    (victim,) = workers.start(name, version, mode="process", worker_options=slow(workers.poc))
    held = until(
        lambda: held_by(workers.poc, victim.who.uuid), timeout, f"{victim.who} holding a job", interval=0.1
    )
    workers.hard_kill(victim.who.uuid)  # SIGKILL: no cleanup, no goodbye, no further heartbeat
    return victim.who.uuid, held


def _plan(poc: str) -> list[tuple[str, str, int]]:
    """One worker for every step of the request's pipelines."""
    with labs.connect(poc) as conn:
        steps = conn.execute(_q()["steps_of"], {"pipe_ids": list(REQUEST_PIPES[poc])}).fetchall()
    return [(name, version, 1) for name, version in steps]


@dataclass
class Crash:
    """A worker SIGKILLed while it held a job, and what became of the job."""

    poc: str
    victim: str  # the killed worker's uuid
    held: list[int]  # the jobs it held when it died
    witnesses: list[str]  # the workers started after the kill, one per step of the request
    seconds: float  # from the kill until the run went quiet (originals) or the request finished (hardened)
    job: dict  # the victim's first job afterwards
    work: pd.DataFrame  # the request's jobs or pipe jobs afterwards
    attempts: list[str] = field(default_factory=list)  # hardened: the job's attempts, in order
    polls: int = 0  # originals: the idle polls each live worker made while nothing moved

    @property
    def stuck(self) -> bool:
        """Whether the job is still assigned to the dead worker, unfinished."""
        return self.job["job_assigned_process_uuid"] == self.victim and not self.job["job_finished"]

    def __str__(self) -> str:
        who = self.job["job_assigned_process_uuid"]
        if self.stuck:
            return (
                f"{self.poc}: job {self.held[0]} is still assigned to {who}, killed {self.seconds:.1f} s "
                f"ago, while {len(self.witnesses)} live workers asked for work {self.polls} times each "
                "and got none"
            )
        return (
            f"{self.poc}: job {self.held[0]} finished {self.seconds:.1f} s after its worker was killed; "
            f"its attempts: {', '.join(map(str, self.attempts)) or 'none recorded'}"
        )


def after_claim(poc: str, *, polls: int = 3, rescue_after: float = 1.0, timeout: float = 30.0) -> Crash:
    """Kill a worker holding the first job of a fresh request, then start a worker for every step; wait
    until every live worker polled `polls` times with nothing moving (originals) or, rescuing after
    `rescue_after` s, the request finished (hardened)."""
    client.fresh_lab(poc)
    if poc == "hardened":
        with labs.connect(poc) as conn:
            conn.execute(labs.step(poc, "find_job").lesson["rescue_after"], {"seconds": rescue_after})
    with client.connect(poc) as c:
        for pipe_id in REQUEST_PIPES[poc]:
            c.submit(pipe_id, REQUEST_ID)
    with fleet.Fleet(poc) as workers:
        victim, held = kill_holding(workers, *FIRST_STEP[poc], timeout=timeout)
        killed = time.time()
        witnesses = workers.launch(_plan(poc), worker_options=fast(poc))
        if poc == "hardened":
            until(
                lambda: request(poc)["pipe_job_finished"].all(),
                timeout,
                "the request finishing",
                interval=0.1,
            )
        else:
            settle(workers, polls, timeout)
        seconds = time.time() - killed
    attempts = []
    if poc == "hardened":
        with labs.connect(poc) as conn:
            outcomes = conn.execute(labs.step(poc, "find_job").lesson["outcomes"], {"job_id": held[0]})
            attempts = [row[0] for row in outcomes]
    return Crash(
        poc,
        victim,
        held,
        [m.who.uuid for m in witnesses],
        seconds,
        job_state(poc, held[0]),
        request(poc),
        attempts,
        0 if poc == "hardened" else polls,
    )


@dataclass
class LostRace:
    """single-call: a dead worker's job handed back by hand, and what find_job answers now."""

    job_id: int
    answers: int  # "Retry, I lost the job race" answers a live worker got meanwhile
    took: int  # times it was handed a job instead (0 while the claim row blocks it)
    job: dict  # the job afterwards: unassigned, unfinished
    claims: pd.DataFrame  # the claim-table row that still names it

    @property
    def stuck(self) -> bool:
        """Whether the job is free, unfinished, and still claimed in job_queue_claim."""
        free = not self.job["job_assigned_process_uuid"] and not self.job["job_finished"]
        return free and self.took == 0 and len(self.claims) > 0


def clear_claim_by_hand(job_id: int, *, answers: int = 5, timeout: float = 30.0) -> LostRace:
    """single-call: set the job's assignee back to NULL, then let a live worker ask for it until it was
    answered `Retry, I lost the job race` `answers` times."""
    poc = "single-call"
    with labs.connect(poc) as conn:
        conn.execute(_q()["clear_claim"], {"job_id": job_id})
    name, version = FIRST_STEP[poc]
    with fleet.Fleet(poc) as workers:
        since = time.time()
        (witness,) = workers.start(name, version, worker_options=fast(poc))
        until(
            lambda: events(workers, witness.who.uuid, ("retry",), since, client.LOST_RACE) >= answers,
            timeout,
            f"{answers} answers '{client.LOST_RACE}'",
        )
        got = events(workers, witness.who.uuid, ("retry",), since, client.LOST_RACE)
        took = events(workers, witness.who.uuid, ("SUCCESS",), since)
    claims = labs.frame(poc, _q()["claims_of"], job_id=job_id)
    return LostRace(job_id, got, took, job_state(poc, job_id), claims)


@dataclass
class ExampleKill:
    """The original example run once with one worker SIGKILLed while it held its job."""

    victim: str  # process name and version
    held: list[int]  # the jobs the victim held when it died
    stalled: pd.DataFrame  # pipe jobs that never finished
    pipe_jobs: int  # pipe jobs in all

    def __str__(self) -> str:
        return (
            f"killing one {self.victim} worker: it held {len(self.held)} job(s), and {len(self.stalled)} of "
            f"{self.pipe_jobs} pipe jobs never finished ({', '.join(map(str, self.stalled['pipe_job_id']))})"
        )


def kill_in_the_example(name: str = "assigner", version: str = "1.0.0", timeout: float = 45.0) -> ExampleKill:
    """single-call: the original example running, its only `name` worker killed while it holds a
    job, then a new `name` worker started; once nothing moves, count what stalled."""
    poc = "single-call"
    labs.reset(poc, examples=True)
    others = [step for step in demo.LAUNCHER + demo.README_FLOW if step[:2] != (name, version)]
    with fleet.Fleet(poc) as workers:
        workers.launch(others, worker_options=fast(poc))
        _, held = kill_holding(workers, name, version, timeout=timeout)
        workers.start(name, version, worker_options=fast(poc))  # its replacement
        settle(workers, polls=3, timeout=timeout)
    stalled = labs.frame(poc, _q()["stalled_pipe_jobs"])
    return ExampleKill(f"{name} {version}", held, stalled, single_call.job_counts()["pipe_jobs"])


@dataclass
class LostAnswer:
    """notify-listen: a heartbeat answered while nobody listened on the worker's channel."""

    job_id: int
    deaf: str  # the worker whose answer was lost
    heard: list[str]  # what a listener that came a moment late heard
    job: dict  # the job afterwards

    @property
    def stuck(self) -> bool:
        """Whether the job stays assigned to the worker that never heard of it."""
        return self.job["job_assigned_process_uuid"] == self.deaf and not self.job["job_finished"]


def answer_nobody_hears(*, polls: int = 3, timeout: float = 30.0) -> LostAnswer:
    """notify-listen: a worker's heartbeat commits while its connection does not listen (as when the
    connection breaks right after the commit); a live worker of the same process then polls."""
    poc = "notify-listen"
    client.fresh_lab(poc)
    deaf = Identity.new(*FIRST_STEP[poc])
    with client.connect(poc) as c:
        job_id = c.submit(1, REQUEST_ID)
        c.beat(deaf)  # answered on deaf's channel, where nobody listens
    with client.connect(poc) as late:
        late.listen(deaf)  # listening now: what was sent before is gone
        heard = [n.payload for n in late.conn.notifies(timeout=0.5)]
    with fleet.Fleet(poc) as workers:
        workers.start(*FIRST_STEP[poc], worker_options=fast(poc))
        settle(workers, polls, timeout)
    return LostAnswer(job_id, deaf.uuid, heard, job_state(poc, job_id))


@dataclass
class Poison:
    """notify-listen: a job row too big for NOTIFY at the head of its process's queue."""

    poisoned: int  # the job inserted directly
    behind: int  # an ordinary job made after it
    sizes: pd.DataFrame  # each job's size as NOTIFY would send it
    failed_beats: int  # heartbeats of a live worker that failed meanwhile
    error: str  # what the worker said
    jobs: pd.DataFrame  # the two jobs afterwards

    @property
    def stuck(self) -> bool:
        """Whether neither job was handed out: the big one cannot be, and it blocks the other."""
        return self.failed_beats > 0 and self.jobs["job_assigned_process_uuid"].isna().all()


def poisoned_queue(*, beats: int = 3, timeout: float = 30.0) -> Poison:
    """notify-listen: insert a job of 9000 bytes directly, make an ordinary one behind it, start a
    worker of their process, and wait (with a deadline) until `beats` of its heartbeats failed."""
    import pandas as pd

    poc = "notify-listen"
    client.fresh_lab(poc)
    with client.connect(poc) as c:
        params = {"request_id": REQUEST_ID, "pipe_id": 1, "bytes": 9000}
        poisoned = c.conn.execute(_q()["poison_job"], params).fetchone()[0]
        behind = c.submit(1, REQUEST_ID + 1)
    sizes = labs.frame(poc, _q()["notify_bytes"])
    with fleet.Fleet(poc) as workers:
        since = time.time()
        (worker,) = workers.start(*FIRST_STEP[poc], worker_options=fast(poc))
        text = "cannot be sent"
        until(
            lambda: events(workers, worker.who.uuid, ("error",), since, text) >= beats,
            timeout,
            f"{beats} failed beats",
        )
        failed = events(workers, worker.who.uuid, ("error",), since, text)
        said = next(e.detail for e in worker.events(workers.log) if e.kind == "error" and text in e.detail)
    jobs = pd.concat(
        [labs.frame(poc, _q()["request_jobs"], request_id=r) for r in (REQUEST_ID, REQUEST_ID + 1)],
        ignore_index=True,
    )
    return Poison(poisoned, behind, sizes, failed, said, jobs)


@dataclass
class WakeUp:
    """hardened: what a wake-up carries, and a job whose wake-up was lost."""

    payload: str  # what the NOTIFY of a new job carried
    job_id: int  # the job made while no wake-up was sent
    heard: list[str]  # what a listener on the workers' channel heard of it
    seconds: float  # from the job's creation until an idle worker claimed it anyway
    poll: float  # the worker's poll interval

    @property
    def claimed_by_polling(self) -> bool:
        """Whether nobody was woken and the worker still claimed the job within about one poll."""
        return not self.heard and self.seconds <= self.poll + 2.0


def lost_wake_up(*, poll: float = 1.0, timeout: float = 30.0) -> WakeUp:
    """hardened: a job whose NOTIFY is never sent (the wake-up trigger disabled), with an idle
    hardened worker listening; it claims the job at its next poll."""
    poc = "hardened"
    client.fresh_lab(poc)
    name, version = FIRST_STEP[poc]
    with labs.connect(poc) as owner, labs.connect(poc) as ear:
        channel = owner.execute(_q()["wake_channel"], {"name": name, "version": version}).fetchone()[0]
        listen = queries.load("clients/notify_listen.sql")["listen"]
        ear.execute(sql.SQL(listen).format(channel=sql.Identifier(channel)))
        jobs = designs.get(poc).client(owner)
        first = jobs.submit(2, REQUEST_ID)
        payload = next(iter(ear.notifies(timeout=5, stop_after=1))).payload
        with fleet.Fleet(poc) as workers:
            since = time.time()
            (worker,) = workers.start(
                name, version, worker_options=hardened.Options(poll=poll, work=(0.0, 0.02))
            )
            until(
                lambda: _claimed(poc, first) and events(workers, worker.who.uuid, ("idle",), since),
                timeout,
                "the worker taking the first job, then waiting for more",
            )
            owner.execute(_q()["silence_wake_ups"])
            try:
                made = time.monotonic()
                second = jobs.submit(2, REQUEST_ID + 1)
                claimed = until(
                    lambda: _claimed(poc, second), timeout, "the worker claiming the job nobody announced"
                )
                seconds = time.monotonic() - made
            finally:
                owner.execute(_q()["restore_wake_ups"])
            heard = [n.payload for n in ear.notifies(timeout=0.2)]
    return WakeUp(payload, claimed, heard, seconds, poll)


def _claimed(poc: str, pipe_job_id: int) -> int | None:
    """The first job of `pipe_job_id` a worker has claimed (an attempt recorded), if any."""
    with labs.connect(poc) as conn:
        row = conn.execute(_q()["claimed_job_of"], {"pipe_job_id": pipe_job_id}).fetchone()
    return row[0] if row else None
