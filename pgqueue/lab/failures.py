"""The failure lab: the originals' failures reproduced on demand, and the hardened lab surviving them."""

from __future__ import annotations

import json
import math
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from pgqueue import queries
from pgqueue.check.core import Verdict, sendable, together, where, written
from pgqueue.errors import PgQueueError
from pgqueue.lab import demo
from pgqueue.lab.races import waiting_on_lock
from pgqueue.queues import designs, fleet, hardened, heartbeats, labs, notify_listen, single_call
from pgqueue.queues.heartbeats import Identity
from pgqueue.wait import until

if TYPE_CHECKING:
    from collections.abc import Iterable

    import pandas as pd


def _q() -> queries.Queries:
    return queries.load("clients/failures.sql")


# ============================================================================================
# Lesson 09: a worker SIGKILLed after its claim, a NOTIFY nobody hears
# ============================================================================================

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


def _fresh_lab(poc: str) -> None:
    """The lab with its example pipelines and no request yet."""
    labs.reset(poc)
    with labs.connect(poc) as conn:
        conn.execute(labs.step(poc, "pipelines").example_sql)


def _submit_request(poc: str) -> None:
    module = designs.get(poc).worker()
    for pipe_id in REQUEST_PIPES[poc]:
        module.submit(pipe_id=pipe_id, request_id=REQUEST_ID)


def kill_holding(
    workers: fleet.Fleet, name: str, version: str, timeout: float = 30.0
) -> tuple[str, list[int]]:
    """Start one process worker that works slowly, wait until it holds a job, SIGKILL it.

    Its uuid and the jobs it held when it died.
    """
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


def crash_after_claim(poc: str, *, polls: int = 3, rescue_after: float = 1.0, timeout: float = 30.0) -> Crash:
    """Kill a worker holding the first job of a fresh request, then start a worker for every step.

    In an original, wait (with a deadline) until every live worker has polled `polls` times with
    nothing moving. In the hardened lab, with `rescue_after` seconds as the rescue threshold, wait
    until the request has finished.
    """
    _fresh_lab(poc)
    if poc == "hardened":
        with labs.connect(poc) as conn:
            conn.execute(labs.step(poc, "find_job").lesson["rescue_after"], {"seconds": rescue_after})
    _submit_request(poc)
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
    """single-call: set the job's assignee back to NULL, then let a live worker ask for it again.

    Waits (with a deadline) until that worker was answered `Retry, I lost the job race` `answers`
    times in a row.
    """
    poc = "single-call"
    with labs.connect(poc) as conn:
        conn.execute(_q()["clear_claim"], {"job_id": job_id})
    name, version = FIRST_STEP[poc]
    with fleet.Fleet(poc) as workers:
        since = time.time()
        (witness,) = workers.start(name, version, worker_options=fast(poc))
        until(
            lambda: events(workers, witness.who.uuid, ("retry",), since, single_call.LOST_RACE) >= answers,
            timeout,
            f"{answers} answers '{single_call.LOST_RACE}'",
        )
        got = events(workers, witness.who.uuid, ("retry",), since, single_call.LOST_RACE)
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
    _fresh_lab(poc)
    job_id = notify_listen.submit(pipe_id=1, request_id=REQUEST_ID)
    deaf = Identity.new(*FIRST_STEP[poc])
    with labs.connect(poc) as conn:
        heartbeats.send_heartbeat(conn, deaf)  # answered on deaf's channel, where nobody listens
    with labs.connect(poc) as late:
        notify_listen.listen(late, deaf)  # listening now: what was sent before is gone
        heard = [n.payload for n in late.notifies(timeout=0.5)]
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
    _fresh_lab(poc)
    with labs.connect(poc) as conn:
        params = {"request_id": REQUEST_ID, "pipe_id": 1, "bytes": 9000}
        poisoned = conn.execute(_q()["poison_job"], params).fetchone()[0]
    behind = notify_listen.submit(pipe_id=1, request_id=REQUEST_ID + 1)
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
    _fresh_lab(poc)
    name, version = FIRST_STEP[poc]
    with labs.connect(poc) as owner, labs.connect(poc) as ear:
        channel = owner.execute(_q()["wake_channel"], {"name": name, "version": version}).fetchone()[0]
        listen = queries.load("clients/notify_listen.sql")["listen"]
        ear.execute(sql.SQL(listen).format(channel=sql.Identifier(channel)))
        first = hardened.submit(pipe_id=2, request_id=REQUEST_ID)
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
                second = hardened.submit(pipe_id=2, request_id=REQUEST_ID + 1)
                claimed = until(
                    lambda: _claimed(poc, second), timeout, "the worker claiming the job nobody announced"
                )
                seconds = time.monotonic() - made
            finally:
                owner.execute(_q()["restore_wake_ups"])
            heard = [n.payload for n in ear.notifies(timeout=0.2)]
    return WakeUp(payload, claimed, heard, seconds, poll)


def _claimed(poc: str, pipe_job_id: int) -> int | None:
    with labs.connect(poc) as conn:
        rows = conn.execute(_q()["claimed_jobs_of"], {"pipe_job_id": pipe_job_id}).fetchall()
    return next((job_id for job_id, _who, attempts, _done in rows if attempts > 0), None)


def _refused_at(exc: psycopg.Error, text: str) -> str:
    """PostgreSQL's words for a learner's SQL it refused, and where in that SQL, when it says."""
    return (exc.diag.message_primary or str(exc)) + where(text, exc, with_parameters=True)


@dataclass(frozen=True)
class _Holder:
    """A worker of the dead-holder exercise: how long ago it beat (None: it never did), its switches."""

    beat: float | None
    killed: bool = False  # its kill switch is set (it exits when it next asks for work)
    stopped: bool = False  # it said it exited cleanly, right after its last beat

    def dead(self, seconds: float) -> bool:
        """Whether its jobs are held by nobody alive, at a threshold of `seconds`."""
        return self.beat is None or self.stopped or self.beat > seconds

    def said(self) -> str:
        """What a learner is told of it."""
        if self.beat is None:
            return "whose holder has no heartbeat row at all"
        if self.stopped:
            return f"whose holder beat {self.beat:.0f} s ago and then said it stopped"
        switch = "whose worker's kill switch is set and which " if self.killed else "whose worker "
        return switch + f"last beat {self.beat:.0f} s ago"


def _dead_holder_scene(
    low: int, high: int
) -> tuple[dict[str, _Holder], list[tuple[str | None, bool, float]]]:
    """The exercise's workers by name, and its jobs as (holder, finished, assigned): who holds them, how
    they ended, how many seconds ago they were handed out.

    `low` and `high` are the two thresholds the query is run with; the workers' silences fall on
    either side of each, and one worker's between 60 times each, so that no interval written into the
    query, nor %(seconds)s read as minutes, can pass both.
    """
    rng = secrets.SystemRandom()
    workers = {
        "live": _Holder(0.0),
        "late": _Holder(round(low / 2, 1)),  # silent, but for less than either threshold
        "between": _Holder(float(rng.randint(low + 2, high - 2))),  # dead at `low` only
        "silent": _Holder(float(rng.randint(2 * high, 3 * high))),
        "ancient": _Holder(float(rng.randint(60 * low + 30, 60 * low + 600))),  # < 60 * high
        "stopped": _Holder(round(low / 2, 1), stopped=True),
        "obeying": _Holder(0.0, killed=True),  # told to exit, still beating: it may finish its job
        "killed": _Holder(float(rng.randint(2 * high, 3 * high)), killed=True),
        "never": _Holder(None),
    }
    # a job runs long beside its worker's beats, or was handed out at its worker's last beat: the
    # age of a job says nothing of its worker
    long_ago = float(4 * high)
    assigned = {
        "late": workers["late"].beat,
        "between": workers["between"].beat,
        "ancient": workers["ancient"].beat + 60,
    }
    jobs = [
        *[(name, False, assigned.get(name, long_ago)) for name in workers],
        ("silent", False, long_ago),  # a worker may hold more than one job
        ("silent", True, long_ago),  # finished before its worker died
        ("", False, long_ago),  # single-call's other "nobody"
        (None, False, long_ago),  # waiting
    ]
    rng.shuffle(jobs)
    return workers, jobs


def check_dead_holders(query: str) -> Verdict:
    """Try the learner's query, which lists the jobs held by dead workers (silent for longer than
    %(seconds)s, stopped, or never beating), on a scratch single-call lab whose answer is known.

    The scene's job ids, the order of its jobs, the workers' silences (one of them minutes long) and
    the jobs' ages are drawn anew each time; the query runs at two thresholds, a few seconds and half
    a minute or so, each in a transaction rolled back afterwards.
    """
    verdict = Verdict("your query for jobs held by dead workers")
    text = written(query, verdict)
    if text is None:
        return verdict
    rng = secrets.SystemRandom()
    low, high = rng.randint(3, 8), rng.randint(25, 45)  # whole seconds, as a learner would pass them
    workers, scene = _dead_holder_scene(low, high)
    uuids = {name: secrets.token_hex(6) for name in workers}
    listed: dict[int, list[int]] = {}
    with labs.scratch("single-call", "find_job", examples=True) as lab, lab.connect() as conn:
        if not sendable(conn, text, ("seconds",), verdict):
            return verdict
        conn.execute(_q()["exercise_first_id"], {"first": rng.randint(100, 9000)})
        conn.execute(_q()["exercise_requests"], {"count": len(scene)})
        ids = [row[0] for row in conn.execute(_q()["exercise_jobs"])]
        for name, who in workers.items():
            if who.beat is not None:
                params = {
                    "uuid": uuids[name],
                    "seconds": who.beat,
                    "killed": who.killed,
                    "stopped": who.stopped,
                }
                conn.execute(_q()["exercise_beat"], params)
        for job_id, (holder, finished, ago) in zip(ids, scene, strict=True):
            uuid = uuids.get(holder, holder)  # '' and None stay as they are
            params = {"job_id": job_id, "uuid": uuid, "ago": ago, "finished": finished or None}
            conn.execute(_q()["exercise_hold"], params)
        for seconds in (low, high):
            try:
                with (
                    conn.transaction(force_rollback=True),
                    conn.cursor(row_factory=psycopg.rows.dict_row) as cur,
                ):
                    rows = cur.execute(text, {"seconds": seconds}).fetchall()
            except psycopg.Error as exc:
                return verdict.refuse(f"it failed: {_refused_at(exc, text)}")
            if rows and "job_id" not in rows[0]:
                return verdict.refuse(f"it should return a column job_id; it returned {list(rows[0])}")
            # ids first, in order; anything else a query returned as job_id (a NULL) after them
            found = (row["job_id"] for row in rows)
            listed[seconds] = sorted(
                found, key=lambda v: (not isinstance(v, int), v if isinstance(v, int) else 0)
            )
    return _judge_dead_holders(verdict, dict(zip(ids, scene, strict=True)), workers, listed)


def _dead_holder_kind(holder: str | None, finished: bool, workers: dict[str, _Holder], seconds: float) -> str:
    """What a job of the scene is at a threshold: held by the silent, the never-beating, the stopped
    or the alive; finished; or nobody's."""
    if not holder:
        return "nobody"
    if finished:
        return "finished"
    who = workers[holder]
    if not who.dead(seconds):
        return "alive"
    return "never" if who.beat is None else "stopped" if who.stopped else "silent"


_Cut = tuple[float, float]  # a query's cut-off lies in [lo, hi): it lists a beating worker silent for longer


def _cut_said(cut: _Cut) -> str:
    """The workers a cut-off counts as dead, in a learner's words."""
    lo, hi = cut
    if lo == -math.inf:
        return "every worker that beats, however recently"
    if hi == math.inf:
        return f"no worker that beats, however long silent (up to {lo:.0f} s here)"
    return f"the workers silent for longer than somewhere between {lo:.0f} and {hi:.0f} s"


def _judge_dead_holders(
    verdict: Verdict,
    scene: dict[int, tuple[str | None, bool, float]],
    workers: dict[str, _Holder],
    listed: dict[int, list[int]],
) -> Verdict:
    """What the query listed at each threshold against the scene's answer; each ✗ line says the cause
    that what was listed shows (a cut-off read off the beating workers listed, or the jobs' ages)."""

    def said(job_id: int) -> str:
        holder, done, _ = scene[job_id]
        what = "finished" if done else workers[holder].said() if holder else f"assigned to {holder!r}"
        return f"job {job_id}, {what}"

    def wrongly(kind: str, *, missed: bool) -> dict[int, list[int]]:
        """The jobs of `kind` the query missed (or listed), by threshold."""
        return {
            s: [
                j
                for j, (h, d, _) in scene.items()
                if _dead_holder_kind(h, d, workers, s) == kind and (j in got) != missed
            ]
            for s, got in listed.items()
        }

    def told(jobs: dict[int, list[int]]) -> str:
        return "; ".join(f"at {s:.0f} s, {'; '.join(map(said, js))}" for s, js in jobs.items() if js)

    thresholds = " and at ".join(f"{seconds:.0f} s" for seconds in listed)
    (low, at_low), (high, at_high) = listed.items()
    dead = {
        s: [
            j
            for j, (h, d, _) in scene.items()
            if _dead_holder_kind(h, d, workers, s) in ("silent", "never", "stopped")
        ]
        for s in listed
    }
    if not at_low and not at_high:
        return verdict.refuse(
            f"it lists no job at either threshold, where {len(dead[low])} jobs are held by dead workers at "
            f"{low:.0f} s and {len(dead[high])} at {high:.0f} s: no row gets through its joins and WHERE "
            "(job_finished is NULL, not false, until a job finishes; a comparison with NULL is never true)"
        )
    # the unfinished jobs of workers that beat and never said they stopped: whether a query lists them
    # shows the cut-off it applies to a silence, if it applies one
    beating = {
        j: workers[h].beat
        for j, (h, d, _) in scene.items()
        if h and not d and workers[h].beat is not None and not workers[h].stopped
    }
    held = {j: ago for j, (h, d, ago) in scene.items() if h and not d}

    def cut(seconds: int) -> _Cut | None:
        """The cut-off the query applied at `seconds`, when it listed exactly the beating workers
        silent for longer than some cut-off; None when it listed some other set of them."""
        got = set(listed[seconds])
        lo = max((b for j, b in beating.items() if j not in got), default=-math.inf)
        hi = min((b for j, b in beating.items() if j in got), default=math.inf)
        return (lo, hi) if lo < hi else None

    def backwards(seconds: int) -> bool:
        """Whether it listed the workers that beat recently and left those silent longer."""
        got = set(listed[seconds])
        ins = [b for j, b in beating.items() if j in got]
        outs = [b for j, b in beating.items() if j not in got]
        return bool(ins and outs) and max(ins) < min(outs)

    cuts = {s: cut(s) for s in listed}
    by_beat = {s: all((j in got) == (b > s) for j, b in beating.items()) for s, got in listed.items()}
    off = [s for s in listed if not by_beat[s]]
    twice = {
        s: sorted({j for j in got if isinstance(j, int) and got.count(j) > 1}) for s, got in listed.items()
    }
    repeated = any(twice.values())  # a join matched a job to more heartbeats: no cut-off can be read
    same = {*at_low} == {*at_high}
    if (
        same
        and not repeated
        and cuts[low]
        and cuts[high]
        and max(cuts[low][0], cuts[high][0]) < min(cuts[low][1], cuts[high][1])
    ):
        moves = (
            f"it lists the same jobs at a threshold of {low:.0f} s and of {high:.0f} s ({_ids(at_low)}): at "
            f"both it counts as dead {_cut_said(cuts[low])} (is %(seconds)s, in seconds, in the comparison "
            "with last_beat_timestamp?)"
        )
    else:
        between = next(iter(j for j in dead[low] if j not in dead[high]), None)
        moves = (
            f"it lists the same jobs at a threshold of {low:.0f} s and of {high:.0f} s ({_ids(at_low)}), "
            f"where {said(between)}, is held by a dead worker at {low:.0f} s and a live one at {high:.0f} s"
        )
    verdict.expect(
        not same,
        f"its answer follows %(seconds)s: {len(at_low)} rows at {low:.0f} s, {len(at_high)} at {high:.0f} s",
        moves,
    )
    missed, alive = wrongly("silent", missed=True), wrongly("alive", missed=False)
    by_age = all(
        {j for j in held if j in got} == {j for j, ago in held.items() if ago > s}
        for s, got in listed.items()
    )
    minutes = all(c and c[0] <= 60 * s < c[1] for s, c in cuts.items())
    first = off[0] if off else low
    if off and not repeated and all(backwards(s) for s in off):
        verdict.refuse(
            "it compares the wrong way round: it lists the jobs of workers that beat since the threshold "
            f"({told(alive)}) and misses those silent for longer ({told(missed)}): a worker is dead when "
            "last_beat_timestamp < clock_timestamp() - make_interval(secs => %(seconds)s)"
        )
    elif off and not repeated and minutes:
        verdict.refuse(
            f"it reads %(seconds)s as minutes, not seconds: at {first:.0f} s it counts as dead only "
            f"{_cut_said(cuts[first])}, where 60 times {first:.0f} s falls, so it misses {told(missed)}: "
            "make_interval(secs => %(seconds)s), or %(seconds)s * interval '1 second'"
        )
    elif off and not repeated and by_age:
        verdict.refuse(
            "it goes by how long ago a job was handed out, not by its worker's last beat: at each threshold "
            "it lists exactly the jobs handed out longer ago, whatever their workers did since, so it lists "
            f"jobs of live workers ({told(alive)}): a worker is dead when its last beat is older than "
            "%(seconds)s"
        )
    else:

        def why(jobs: dict[int, list[int]]) -> str:
            """What the jobs wrongly listed or missed show of the cause."""
            every = [j for js in jobs.values() for j in js]
            if repeated:
                return ""
            if all(workers[scene[j][0]].killed for j in every):
                return (
                    ": a kill switch asks a worker to exit; it is dead when its last beat is older than "
                    "%(seconds)s, whether its switch is set or not"
                )
            if all(cuts.values()):
                return (
                    f": at {first:.0f} s it counts as dead {_cut_said(cuts[first])}; compare "
                    "last_beat_timestamp with clock_timestamp() - make_interval(secs => %(seconds)s)"
                )
            return ": a worker is dead when its last beat is older than %(seconds)s"

        verdict.expect(
            not any(missed.values()),
            f"it lists the jobs of workers silent for longer than the threshold (at {thresholds})",
            f"it misses jobs whose worker was silent for longer than %(seconds)s ({told(missed)})"
            + why(missed),
        )
        verdict.expect(
            not any(alive.values()),
            "it leaves live workers' jobs alone (a kill switch set on a worker that still beats included)",
            f"it lists jobs of workers still alive at that threshold ({told(alive)}){why(alive)}",
        )
    never = wrongly("never", missed=True)
    verdict.expect(
        not any(never.values()),
        "it lists a job whose holder has no heartbeat at all",
        f"it misses a job whose holder has no heartbeat row at all ({told(never)}): such a holder is dead "
        "too; keep its job with a LEFT JOIN and count h.process_uuid IS NULL as dead (or ask NOT EXISTS of "
        "a live beat)",
    )
    stopped = wrongly("stopped", missed=True)
    verdict.expect(
        not any(stopped.values()),
        "it lists a job whose holder said it stopped",
        f"it misses a job whose holder said it stopped ({told(stopped)}): a worker that exited holds its job "
        "for nobody, however recent its last beat",
    )
    done = wrongly("finished", missed=False)
    verdict.expect(
        not any(done.values()),
        "it leaves finished jobs out",
        f"it lists a job that finished before its worker died ({told(done)})",
    )
    nobody = wrongly("nobody", missed=False)
    verdict.expect(
        not any(nobody.values()),
        "it leaves waiting jobs out ('' and NULL both mean nobody)",
        f"it lists waiting jobs ({told(nobody)}): in single-call '' also means nobody",
    )
    odd = {s: [j for j in got if not isinstance(j, int)] for s, got in listed.items()}
    if any(odd.values()):  # rows a join made up, with no job behind them
        rows = ", ".join(f"at {s} s {len(rows)} ({rows[0]!r})" for s, rows in odd.items() if rows)
        verdict.refuse(f"it returns rows whose job_id is not a job's id: {rows}")
    verdict.expect(
        not repeated,
        "it lists each job once",
        "it lists a job twice: " + ", ".join(f"at {s:.0f} s {ids}" for s, ids in twice.items() if ids),
    )
    return verdict


# ============================================================================================
# Lesson 10: races for a job. One job handed to two workers, callers queueing behind one row
# lock, a pipe job finished twice, an incomplete set hiding complete ones; each forced on two
# or more connections, or tried many times by racers a barrier releases together.
# ============================================================================================

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


# --- the exercise: a claim that never waits and never doubles --------------------------------


CLAIM_LOCK_TIMEOUT = 2.0  # seconds a caller of the claim exercise waits for a lock before it gives up


@dataclass(frozen=True)
class _GaveUp:
    """A caller whose claim raised lock_not_available: after `seconds`, in PostgreSQL's words."""

    seconds: float
    said: str


@dataclass(frozen=True)
class _Scene:
    """The claim exercise's jobs, as a claim must see them."""

    order: list[int]  # the free jobs of first_process 1.9.2, in the order a claim must take them
    others: dict[int, str]  # the jobs it must not take, each with why
    best: int  # the most urgent free job's priority
    nobody: int  # the free job assigned to '' (nobody, in single-call): the second most urgent
    # (priority, older, newer): two free jobs of one priority, stored newer first; the two most urgent,
    # then the last the callers must take and the one after it
    ties: list[tuple[int, int, int]]


def _claim_scene(conn: psycopg.Connection, callers: int) -> _Scene:
    """Lay out the race's jobs on the scratch lab, drawn anew.

    Free jobs of first_process 1.9.2 of drawn priorities wait beside more urgent ones that must not
    be taken (held, finished with no holder, another process's). Two pairs of free jobs share a
    priority: the two most urgent (the newer assigned to '') and the last job the callers must take
    with the one after it. Each pair's newer job is stored before the older, and the free jobs are
    stored in the order of their priority: PostgreSQL's sort and its top-N sort keep the stored order
    of equal keys when the rows come in already sorted, so a claim without the age tie-break always
    returns the newer one, whatever subset of the rows its WHERE lets through.
    """
    rng = secrets.SystemRandom()
    best = rng.randint(2, 60)  # the most urgent free job's priority (1 is the most urgent of all)
    worse = sorted(rng.sample(range(best + 1, best + 80), callers - 1 + rng.randint(1, 3)))
    worse[callers - 1] = worse[callers - 2]  # the callers' last job and the next share a priority
    free = [("free", best, None), ("free", best, ""), *(("free", p, None) for p in worse)]
    # a finished job whose holder was cleared, as an operator's hand-back by hand leaves one
    decoys = [("held", best - 1, secrets.token_hex(6)), ("finished", best - 1, None)]
    decoys.append(("second_process", best - 1, None))
    # the ages (and ids): a worse job is the oldest, so that ordering by age alone is seen; the rest
    # drawn, each pair of equal priority older first
    rest = list(range(len(free) + len(decoys)))
    first = rng.choice(range(2, len(free)))
    rest.remove(first)
    rng.shuffle(rest)
    by_age = [first, *rest]
    for a, b in ((0, 1), (callers, callers + 1)):
        i, j = by_age.index(a), by_age.index(b)
        if i > j:
            by_age[i], by_age[j] = by_age[j], by_age[i]
    entries = [*free, *decoys]
    conn.execute(_q()["exercise_first_id"], {"first": rng.randint(100, 9000)})
    conn.execute(_q()["exercise_requests"], {"count": len(entries)})
    ids = [row[0] for row in conn.execute(_q()["exercise_jobs"])]
    id_of = {e: ids[n] for n, e in enumerate(by_age)}  # the older the lower its id
    for e in by_age:
        kind, priority, holder = entries[e]
        name, version = (
            ("second_process", "2.2.0") if kind == "second_process" else ("first_process", "1.9.2")
        )
        params = {
            "job_id": id_of[e],
            "priority": priority,
            "uuid": holder,
            "finished": kind == "finished" or None,
        }
        # whole seconds apart: no two tie, and ordering by id is no mistake
        params.update(name=name, version=version, ago=len(entries) - by_age.index(e))
        conn.execute(_q()["claim_scene_job"], params)
    # an UPDATE's new row may take any free slot of its page: the table is rewritten in the order wanted
    conn.execute(_q()["claim_scene_store"])
    stored, wanted = conn.execute(_q()["claim_scene_stored"]).fetchone()
    if stored != wanted:
        raise PgQueueError("the claim exercise's jobs could not be stored in the order it needs; check again")
    why = {
        "held": "which another worker holds",
        "finished": "which has finished",
        "second_process": "a job of second_process 2.2.0",
    }
    others = {id_of[e]: why[entries[e][0]] for e in range(len(free), len(entries))}
    order = [id_of[e] for e in range(len(free))]
    ties = [(free[a][1], id_of[a], id_of[a + 1]) for a in (0, callers)]
    return _Scene(order, others, best, id_of[1], ties)


@dataclass(frozen=True)
class _Locks:
    """What open transactions held on the claim scene, as a probe session found it trying to lock."""

    modes: dict[int, str]  # job id -> the strongest row lock held on it: "FOR KEY SHARE", "FOR SHARE",
    # or "FOR UPDATE" (FOR NO KEY UPDATE looks the same to a probe)
    advisory: list[int]  # the keys of the advisory locks the sessions looked at hold
    pipes: list[int]  # pipe jobs whose pipe_job_queue row is locked


def _locks(probe: psycopg.Connection, ids: list[int], pids: list[int]) -> _Locks:
    """Which rows of `ids` are locked, in which mode, and which advisory locks sessions `pids` hold:
    each mode found by the locks a probe can and cannot take, each try rolled back."""

    def lockable(name: str) -> set[int]:
        with probe.transaction(force_rollback=True):
            return {row[0] for row in probe.execute(_q()[name], {"ids": ids})}

    unlocked, no_key, share = (lockable(f"claim_lockable_{m}") for m in ("update", "no_key", "share"))
    modes = {
        j: "FOR KEY SHARE" if j in no_key else "FOR SHARE" if j in share else "FOR UPDATE"
        for j in ids
        if j not in unlocked
    }
    with probe.transaction(force_rollback=True):
        pipes = [row[0] for row in probe.execute(_q()["claim_pipes_locked"])]
    advisory = [row[0] for row in probe.execute(_q()["claim_advisory_keys"], {"pids": pids})]
    return _Locks(modes, advisory, pipes)


def claim_skips_locked(text: object, callers: int | None = None) -> Verdict:
    """Check the learner's claim query: callers released together while one job is held open elsewhere.

    On a scratch single-call lab, free jobs of first_process 1.9.2 of drawn priorities wait beside
    more urgent ones that must not be taken (held, finished, another process's); the two most urgent
    free ones share a priority (the newer assigned to ''), as do the last the callers must take and the
    next, and each pair is stored newer first, so that only an age tie-break puts the older first. One
    transaction picks a job with the learner's query and stays open; then `callers` others (3 to 6,
    drawn, unless given), released together, each pick with it inside their own transaction and keep
    it open while another session tries to lock every job of the scene (in each mode, to tell which
    lock is held) and reads the advisory locks held. A caller that has to wait for a lock gives up
    after 2 s (lock_timeout). The query takes %(name)s and %(version)s and returns one job_id.
    """
    if callers is None:
        callers = secrets.SystemRandom().randint(3, 6)
    elif isinstance(callers, bool) or not isinstance(callers, int) or not 2 <= callers <= 20:
        raise PgQueueError(f"callers is a whole number from 2 to 20, got {callers!r}")
    verdict = Verdict("your claim")
    if written(text, verdict) is None:
        return verdict
    params = {"name": "first_process", "version": "1.9.2"}
    with labs.scratch("single-call") as lab, lab.connect() as holder, lab.connect() as probe:
        if not sendable(holder, text, tuple(params), verdict):
            return verdict
        holder.execute(labs.step("single-call", "pipelines").example_sql)
        scene = _claim_scene(holder, callers)
        order, others = scene.order, scene.others
        ids = [*order, *others]
        conns = [lab.connect() for _ in range(callers)]
        try:
            for c in conns:
                c.execute(
                    queries.load("clients/races.sql")["lock_timeout"],
                    {"ms": str(int(CLAIM_LOCK_TIMEOUT * 1000))},
                )
            with holder.transaction():
                try:
                    row = holder.execute(text, params).fetchone()
                except psycopg.Error as exc:
                    return verdict.refuse(f"PostgreSQL refused your query: {_refused_at(exc, text)}")
                before = _locks(probe, ids, [holder.info.backend_pid])
                if row is None or not isinstance(row[0], int):
                    found = "no job" if row is None else f"{row[0]!r} first, not a job_id"
                    waiting = f"{len(order)} free jobs of first_process 1.9.2 waiting"
                    kept = ""
                    if before.modes:
                        kept = (
                            f", while its transaction locked {len(before.modes)} rows (jobs "
                            f"{_ids(before.modes)}): the rows it locks are not the rows it returns "
                            "(FOR UPDATE SKIP LOCKED belongs on the query that returns the job, with its "
                            "ORDER BY and LIMIT)"
                        )
                    return verdict.refuse(f"your query returned {found}, with {waiting}{kept}")
                pids = [holder.info.backend_pid, *(c.info.backend_pid for c in conns)]
                got, after = _claim_race(conns, text, params, probe, ids, pids)
        finally:
            for c in conns:
                c.close()
    if isinstance(got, str):
        return verdict.refuse(got)
    return _judge_claims(verdict, row[0], got, before, after, scene)


def _claim_race(
    conns: list[psycopg.Connection],
    text: str,
    params: dict,
    probe: psycopg.Connection,
    ids: list[int],
    pids: list[int],
) -> tuple[list[object] | str, _Locks | None]:
    """The callers released together, each picking inside a transaction it keeps open until `probe`
    has looked at the locks held on every job of the scene; what each caller got, and those locks
    (a one-line reason instead, if a caller neither picked nor gave up)."""
    callers = len(conns)
    picked: list[object] = [None] * callers
    answered = [False] * callers
    release = threading.Event()

    def pick(i: int) -> object:
        start = time.monotonic()
        try:
            with conns[i].transaction():
                row = conns[i].execute(text, params).fetchone()
                picked[i] = row[0] if row else None
                answered[i] = True
                release.wait(30)  # the pick is held while the probe looks
            return picked[i]
        except psycopg.errors.LockNotAvailable as exc:
            return _GaveUp(time.monotonic() - start, exc.diag.message_primary or str(exc))
        finally:
            answered[i] = True

    results: list[object] = []
    racer = threading.Thread(target=lambda: results.extend(together(callers, pick)), daemon=True)
    racer.start()
    try:
        until(lambda: all(answered), 30, "every caller picking a job or giving up", interval=0.02)
        locks = _locks(probe, ids, pids)
    except Exception as exc:  # noqa: BLE001 - a Timeout, or the probe refused: told, not raised
        release.set()
        racer.join(30)
        return f"the race could not be judged: {exc}", None
    release.set()
    racer.join(30)
    failed = [r for r in results if isinstance(r, BaseException)]
    if failed:
        said = failed[0].diag.message_primary if isinstance(failed[0], psycopg.Error) else failed[0]
        return f"a caller's query failed: {said or failed[0]}", None
    return results, locks


def _ids(jobs: Iterable[int]) -> str:
    return ", ".join(map(str, sorted(set(jobs))))


def _judge_claims(
    verdict: Verdict,
    held: int,
    got: list[object],
    before: _Locks,
    after: _Locks,
    scene: _Scene,
) -> Verdict:
    """What the holder and the callers got, against the scene's answer; each ✗ line says the cause the
    locks seen show (`before`: with the first pick alone open, `after`: with every caller's open too)."""
    order, others, best = scene.order, scene.others, scene.best
    callers = len(got)
    gave = [g for g in got if isinstance(g, _GaveUp)]
    waited = [g for g in gave if g.seconds >= CLAIM_LOCK_TIMEOUT * 0.9]
    at_once = [g for g in gave if g not in waited]
    jobs = [g for g in got if isinstance(g, int)]
    drawn = f"{callers} callers, {len(order)} free jobs"
    verdict.expect(
        not waited,
        f"no caller waited for a row another transaction holds ({drawn})",
        f"{len(waited)} of {callers} callers waited for the lock on a row another transaction held, and gave "
        f"up after {CLAIM_LOCK_TIMEOUT:.0f} s: FOR UPDATE waits for a locked row, SKIP LOCKED passes over it",
    )
    verdict.expect(
        not at_once,
        "no caller gave up on a locked row",
        f"{len(at_once)} of {callers} callers failed at once ({at_once[0].said if at_once else ''}): NOWAIT "
        "raises an error where SKIP LOCKED passes over the locked row",
    )
    picks = [held, *jobs]
    real = [j for j in picks if j in order or j in others]
    unlocked = sorted({j for j in real if j not in after.modes})
    if set(unlocked) & set(after.advisory):
        how = "it takes an advisory lock on the job's id, which a row lock does not see"
    elif after.pipes:
        how = f"it locks pipe jobs {_ids(after.pipes)} of pipe_job_queue instead; lock OF the job_queue row"
    else:
        how = "no lock is held on it: FOR UPDATE SKIP LOCKED on the query that returns the job"
    if real:
        verdict.expect(
            not unlocked,
            f"every row picked stayed locked while its transaction was open (jobs {_ids(real)})",
            f"job(s) {_ids(unlocked)} could be locked FOR UPDATE by another session while the transaction "
            f"that picked them was open: your query does not lock the job's row ({how})",
        )
    doubled = sorted({j for j in picks if picks.count(j) > 1})
    mode = after.modes.get(doubled[0]) if doubled else None
    if mode in ("FOR KEY SHARE", "FOR SHARE"):
        why = (
            f"each took it {mode}, a lock that does not conflict with another {mode}, so none passed "
            "over it: FOR UPDATE (or FOR NO KEY UPDATE) SKIP LOCKED excludes other claimers"
        )
    elif mode == "FOR UPDATE":
        why = (
            f"job {doubled[0]} was locked FOR UPDATE or NO KEY UPDATE by one transaction, and the others' "
            "query returned it without waiting or passing over it: the row your query returns is not a row "
            "it locks "
            "(FOR UPDATE SKIP LOCKED belongs on the query that returns the job)"
        )
    else:
        why = "no transaction held a lock on its row, so nothing told the others it was taken"
    verdict.expect(
        not doubled,
        "no job was handed to two callers",
        f"a job went to two callers: the open transaction picked {held}, the callers got {jobs}: {why}",
    )
    nothing = sum(1 for g in got if g is None)
    if not gave and all(j in order or j in others for j in jobs):  # else told below: no job of the queue
        mine = sorted(set(after.modes) - set(before.modes) - set(jobs))  # the callers locked, not returned
        idle = [j for j in order if j not in after.modes]
        if set(before.modes) - {held}:
            cause = (
                f"the open transaction returned job {held} but locked {len(before.modes)} rows (jobs "
                f"{_ids(before.modes)}), so the callers found them locked: lock only the row you return "
                "(LIMIT 1 in the query that locks)"
            )
        elif set(before.advisory) - {held}:
            cause = (
                f"the open transaction returned job {held} but took {len(before.advisory)} advisory locks "
                f"(keys {_ids(before.advisory)}): a lock taken in WHERE is taken on every row WHERE tests, "
                "and the callers' tries then fail on them"
            )
        elif idle and not mine:
            cause = (
                f"jobs {_ids(idle)} stayed free and unlocked, and the callers locked no row: they passed "
                "over a locked job and took none in its place (a job picked in a subquery, then skipped by "
                "the lock outside it?): SKIP LOCKED belongs on the query that orders and limits the pick"
            )
        else:
            cause = f"rows locked meanwhile: jobs {_ids(after.modes) or 'none'}"
        verdict.expect(
            not nothing,
            f"each of the {callers} callers got a job",
            f"{nothing} of {callers} callers got no job, with {len(order)} free jobs and {len(set(picks))} "
            f"picked: {cause}",
        )
    wrong = [
        f"job {j}, {others.get(j, 'which is no job of the queue')}"
        for j in dict.fromkeys(picks)
        if j not in order
    ]
    verdict.expect(
        not wrong,
        "it picks only free jobs of first_process 1.9.2 (NULL or '' as the holder)",
        f"it picked {'; '.join(wrong)}: a claim takes only unassigned, unfinished jobs of its own process",
    )
    if held in order:
        if held == scene.nobody:  # the newer of the two most urgent, stored before the older
            priority, older, _ = scene.ties[0]
            cause = (
                f"two jobs of equal priority came back in the wrong order: the first pick was job {held}, "
                f"made after job {older} of the same priority {priority}: add the tie-break the lesson asks "
                "for (ORDER BY job_priority, then job_create_timestamp, the older first)"
            )
            if not doubled and not [j for j in jobs if j in order and j != scene.nobody]:  # none NULL
                cause = (
                    f"the first pick was job {held}, assigned to '', and no caller got one of the free jobs "
                    f"whose holder is NULL (job {order[0]}, priority {best}, first): NULL means nobody too"
                )
        else:
            cause = (
                f"the first pick was job {held}, where the most urgent free job was job {order[0]} (priority "
                f"{best}, the older of two): order by job_priority, then job_create_timestamp"
            )
        verdict.expect(
            held == order[0],
            f"the first pick was the most urgent free job ({held}: priority {best}, the older of two)",
            cause,
        )
    if len(jobs) == callers and not doubled and held == order[0]:
        want = order[1 : callers + 1]
        if scene.nobody in want and scene.nobody not in jobs and scene.nobody not in after.modes:
            cause = (
                f"job {scene.nobody} (priority {best}) stayed free and no caller took it: it is assigned to "
                "'', which means nobody in single-call, as NULL does"
            )
        elif set(jobs) == set(want) ^ {scene.ties[1][1], scene.ties[1][2]}:
            priority, older, later = scene.ties[1]
            cause = (
                f"two jobs of equal priority came back in the wrong order: job {later} was taken, made "
                f"after job {older} of the same priority {priority}: add the tie-break the lesson asks for "
                "(ORDER BY job_priority, then job_create_timestamp, the older first)"
            )
        else:
            cause = f"where the next most urgent free jobs were {sorted(want)}"
        verdict.expect(
            sorted(jobs) == sorted(want),
            "the callers took the next most urgent free jobs",
            f"the callers got jobs {sorted(jobs)}: {cause}",
        )
    return verdict
