"""A chaos round's forced scenes: what random kills seldom meet, made to happen, and what each showed."""

from __future__ import annotations

import os
import random
import signal
import time
from dataclasses import dataclass, field

import psycopg

from pgqueue import queries
from pgqueue.queues import designs, fleet, labs, steps
from pgqueue.queues.heartbeats import Identity
from pgqueue.wait import Timeout, until

POC = "hardened"
POISONED_PIPE = 2  # a plain chain: its first job is the one the round poisons
# The frozen-worker scene waits for a live worker that still holds its job once frozen (a job's
# work is short: most freezes land after the hand-over); and for a frozen worker's call to end.
FREEZE_WITHIN = 10.0
CALL_ENDS_WITHIN = 2.0


def _t() -> queries.Queries:
    return labs.step(POC, "find_job").lesson


def _c() -> queries.Queries:
    return queries.load("clients/chaos.sql")


@dataclass
class Scenes:
    """What the round forced on purpose, beside the random kills, and what each showed (✓/✗ lines)."""

    poisoned: list[int] = field(default_factory=list)
    frozen: set[str] = field(default_factory=set)  # workers the round froze (SIGSTOP)
    held: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    gates: list[dict] = field(default_factory=list)  # requests whose order-1 finishes were held
    claim_tries: int = 0
    freeze_tries: int = 0


def submit(conn: psycopg.Connection, pipe_ids: list[int], poison: bool, forced: Scenes) -> int:
    """Make one request (and poison the first job of its plain chain if asked); its id."""
    with conn.transaction():
        made = conn.execute(_t()["chaos_request"], {"pipe_ids": pipe_ids}).fetchall()
        if poison:
            pipe_job = made[pipe_ids.index(POISONED_PIPE)][1]
            forced.poisoned.append(conn.execute(_c()["poison"], {"pipe_job_id": pipe_job}).fetchone()[0])
    return made[0][0]


def hold_finishes(request_id: int, forced: Scenes) -> psycopg.Connection:
    """Lock a new request's order-1 pipe jobs: their finishes wait, to be let go together."""
    gate = labs.connect(POC, autocommit=False)
    held = gate.execute(_c()["hold_finishes"], {"request_id": request_id}).fetchall()
    pid = gate.execute(_c()["backend_pid"]).fetchone()[0]
    forced.gates.append(
        {
            "request": request_id,
            "pipe_jobs": len(held),
            "pid": pid,
            "since": time.monotonic(),
            "waiting": None,
        }
    )
    return gate


def release_finishes(
    conn: psycopg.Connection, gates: list[psycopg.Connection], forced: Scenes, deadline: float
) -> None:
    """Let a held request's finishes go once all of them wait (or `deadline` s after it was made)."""
    for gate, held in zip(gates, forced.gates, strict=True):
        if held["waiting"] is not None:
            continue
        waiting = conn.execute(_c()["finishers_waiting"], {"pid": held["pid"]}).fetchone()[0]
        if waiting >= held["pipe_jobs"] or time.monotonic() - held["since"] >= deadline:
            held["waiting"] = waiting
            gate.commit()


def hold_a_claim(conn: psycopg.Connection, forced: Scenes, seconds: float = 0.8) -> None:
    """Hold the best waiting job of a process locked for `seconds`, as a claim in progress holds it,
    and count the find_job calls that waited for it meanwhile (a right claim passes it over)."""
    forced.claim_tries += 1
    with labs.connect(POC, autocommit=False) as holder:
        row = holder.execute(_c()["hold_a_waiting_job"]).fetchone()
        if row is None:
            return
        job, process = row
        pid = holder.execute(_c()["backend_pid"]).fetchone()[0]
        waited, end = 0, time.monotonic() + seconds
        # the whole hold is watched: a claim that waits, waits until the lock goes, so a look
        # every 50 ms sees each one
        while time.monotonic() < end:
            waited = max(waited, conn.execute(_c()["waiting_on"], {"pid": pid}).fetchone()[0])
            time.sleep(0.05)
        holder.rollback()
    if waited:
        forced.wrong.append(
            f"while the round held waiting job {job} ({process}) locked for {seconds:g} s, as a claim in "
            f"progress holds it, {waited} find_job calls waited for it: your claim_jobs waits for a locked "
            "job instead of passing it over (SKIP LOCKED)"
        )
    else:
        forced.held.append(
            f"while the round held waiting job {job} ({process}) locked for {seconds:g} s, as a claim in "
            "progress holds it, no find_job call waited for it"
        )


def freeze_a_holder(
    conn: psycopg.Connection, workers: fleet.Fleet, forced: Scenes, rescue_after: float, rng: random.Random
) -> None:
    """Freeze (SIGSTOP) a worker holding a job, and the other workers of its process, until its
    job is rescued; lease the job to a stand-in worker; wake the frozen one (SIGCONT), whose late
    hand-over must be refused; then the stand-in hands the job over, as its holder."""
    c = _c()
    forced.freeze_tries += 1
    try:
        uuid, job, a, kin, frozen_at = until(
            lambda: _freeze_holding(conn, workers, forced, rng),
            FREEZE_WITHIN,
            "a worker frozen while it holds a job",
            interval=0.1,
        )
    except Timeout:
        return  # no worker held a job of its own for long enough to be frozen with it: no scene
    try:
        try:
            state = until(
                lambda: (
                    (s := conn.execute(c["job_state"], {"job_id": job, "uuid": uuid}).fetchone())
                    and (s[0] != uuid or s[1] or s[2])
                    and s
                ),
                rescue_after * 2 + 1,
                f"job {job} rescued from frozen worker {uuid}",
            )
        except Timeout:
            return  # never rescued: the lost jobs say so at the end
        if state[1] or state[2] or state[0] is not None or state[3] != "rescued":
            return  # it ended, failed or was taken before its rescue: nothing to see
        b = Identity.new(a.who.name, a.who.version)
        beat = {"uuid": b.uuid, "server": b.server, "name": b.name, "version": b.version}
        conn.execute(c["beat_as"], beat)
        leased = conn.execute(c["lease_to"], {"uuid": b.uuid, "job_id": job}).fetchone()[0]
        since = conn.execute(c["now"]).fetchone()[0]
        frozen_for = time.monotonic() - frozen_at
        os.killpg(a.process.pid, signal.SIGCONT)

        def woken_asked() -> bool:
            conn.execute(c["beat_as"], beat)  # the stand-in is alive while it holds the job
            return conn.execute(c["asked_since"], {"uuid": uuid, "since": since}).fetchone()[0]

        try:
            until(woken_asked, 10, f"woken worker {uuid} asking for work again")
        except Timeout:
            return  # it crashed on its hand-over: the crash is named at the end
        # a hand-over let through finished the job, or (a failure's) ended the stand-in's attempt
        after = conn.execute(c["job_state"], {"job_id": job, "uuid": b.uuid}).fetchone()
        late_went_through = after[1] or after[3] == "failed"
        if after[3] == "rescued":
            return  # the stand-in beat, yet lost the job to a rescue: the live rescues are named at the end
        refused = _hand_over(conn, b, leased)
    finally:
        _signal(kin, signal.SIGCONT)
    said = (
        f"a worker frozen for {frozen_for:.1f} s (rescue_after is {rescue_after:g} s) while it held job "
        f"{job} woke after the job was rescued and leased to another worker"
    )
    if late_went_through:
        forced.wrong.append(
            f"{said}, and its late hand-over went through: your hold_jobs lets a worker that no longer "
            "holds a job hand it over"
        )
    elif refused:
        forced.wrong.append(f"{said}; its late hand-over was refused, but so was the new holder's: {refused}")
    else:
        forced.held.append(f"{said}: its late hand-over changed nothing, and the new holder's went through")


def _freeze_holding(
    conn: psycopg.Connection, workers: fleet.Fleet, forced: Scenes, rng: random.Random
) -> tuple[str, int, fleet.Member, list[fleet.Member], float] | None:
    """Freeze a live worker that holds a job, with the other workers of its process (none of them
    may take the job once it is rescued); (its uuid, the job, it, them, when) if it still holds the
    job once frozen, else None with all of them woken again."""
    c = _c()
    alive = {m.who.uuid: m for m in workers.members(alive=True)}
    held_requests = [gate["request"] for gate in forced.gates]
    rows = [
        row for row in conn.execute(c["holding_workers"], {"held_requests": held_requests}) if row[0] in alive
    ]
    if not rows:
        return None
    uuid, job = rng.choice(rows)
    a = alive[uuid]
    kin = [m for m in alive.values() if (m.who.name, m.who.version) == (a.who.name, a.who.version)]
    frozen_at = time.monotonic()
    _signal(kin, signal.SIGSTOP)
    forced.frozen.update(m.who.uuid for m in kin)
    # a job's work takes milliseconds: the worker read as its holder may be handing it over as it
    # stops, and that call ends on the server regardless; what it holds is read once none runs
    try:
        until(
            lambda: conn.execute(c["calls_running"], {"uuid": uuid}).fetchone()[0] == 0,
            CALL_ENDS_WITHIN,
            f"the calls of frozen worker {uuid} ending",
        )
        holder, finished, dead, _ = conn.execute(c["job_state"], {"job_id": job, "uuid": uuid}).fetchone()
    except Timeout:
        holder = None  # a call waiting for a lock: frozen now, it would hold that lock the whole scene
    if holder == uuid and not finished and not dead:
        return uuid, job, a, kin, frozen_at
    _signal(kin, signal.SIGCONT)
    return None


def _signal(members: list[fleet.Member], sig: signal.Signals) -> None:
    """Send `sig` to the process group of each member still alive (SIGSTOP freezes, SIGCONT wakes)."""
    for m in members:
        if m.alive:
            os.killpg(m.process.pid, sig)


def froze_once(forced: Scenes) -> bool:
    return any("a worker frozen" in line for line in forced.held + forced.wrong)


def _hand_over(conn: psycopg.Connection, who: Identity, jobs: list[dict]) -> str | None:
    """The hand-over a worker makes of `jobs` once worked, made as `who`; PostgreSQL's refusal, if any."""
    try:
        designs.get(POC).client(conn).act(who, steps.plan(conn, who, jobs))
    except psycopg.Error as exc:
        return exc.diag.message_primary or str(exc)
    return None
