"""A chaos round: hardened worker processes SIGKILLed at random while requests run, then the queue judged."""

from __future__ import annotations

import random
import time
from collections import defaultdict
from dataclasses import dataclass, field

import psycopg
from psycopg.rows import dict_row

from pgqueue import queries
from pgqueue.check.core import Verdict
from pgqueue.errors import PgQueueError
from pgqueue.lab import dead_letters
from pgqueue.lab import scenes as scene
from pgqueue.queues import fleet, hardened, labs
from pgqueue.wait import until, until_still

POC = "hardened"
# A request as the example's request 50 makes it: four order-1 pipelines, then the report (order 2).
REQUEST = (1, 2, 3, 5, 4)
# A rescued worker counts as alive when it beat less than this share of rescue_after before the
# rescue: a beat commits a moment after its timestamp, so a right rescue can free a job whose
# holder's last beat, not yet visible to it, is a few milliseconds short of rescue_after.
ALIVE_SHARE = 0.75
POISON_MARK = "is poisoned, it kills every worker that runs it"


def _t() -> queries.Queries:
    return labs.step(POC, "find_job").lesson


def _c() -> queries.Queries:
    return queries.load("clients/chaos.sql")


@dataclass(frozen=True)
class Round:
    """What a chaos round did, and its verdict on the queue: `problems` is empty when the queue held."""

    requests: int
    pipe_jobs: int = 0
    pipe_jobs_finished: int = 0
    jobs: int = 0
    jobs_succeeded: int = 0  # finished, with exactly one succeeded attempt
    jobs_dead: int = 0  # dead-lettered
    workers_started: int = 0
    kills: int = 0
    kills_holding: int = 0  # of the kills, those of a worker that held a job
    rescued: int = 0  # attempts ended by a rescue
    rescued_from_the_living: int = 0  # of those, attempts whose worker had beaten within rescue_after
    failed: int = 0  # attempts ended by a handler's failure
    seconds: float = 0.0
    verdict: Verdict = field(default_factory=lambda: Verdict("the hardened queue"))

    @property
    def problems(self) -> list[str]:
        """Every invariant the round found broken, one sentence each (the verdict's ✗ lines)."""
        return self.verdict.wrong

    @property
    def held(self) -> bool:
        """Whether every invariant held."""
        return not self.problems

    def summary(self) -> str:
        """For people: what ran, what was killed, and the verdict, invariant by invariant."""
        lines = [
            f"{self.requests} requests, {self.pipe_jobs} pipe jobs ({self.pipe_jobs_finished} finished), "
            f"{self.jobs} jobs ({self.jobs_succeeded} succeeded once, {self.jobs_dead} dead-lettered) "
            f"in {self.seconds:.1f} s",
            f"{self.kills} workers SIGKILLed ({self.kills_holding} holding a job), {self.workers_started} "
            f"started; attempts rescued: {self.rescued} ({self.rescued_from_the_living} from live "
            f"workers), failed: {self.failed}",
        ]
        return "\n".join([*lines, str(self.verdict)])


def jobs_made(steps: list[tuple[int, int, dict]]) -> dict[int, int]:
    """How many jobs a finished pipe job of each pipeline made: fan-outs widen, a gatherer narrows
    to one job again (each member of a set is a job of the gatherer's, handed over as one)."""
    made: dict[int, int] = {}
    width: dict[int, int] = {}
    for pipe_id, _order, config in steps:
        w = width.get(pipe_id, 1)
        made[pipe_id] = made.get(pipe_id, 0) + w
        if config.get("gather"):
            w = 1
        width[pipe_id] = w * config.get("fan_out", 1)
    return made


@dataclass
class Did:
    """What a round did, for its judge: what it asked of the handlers, whom it stopped, what it forced."""

    requests: int = 0
    fail: float = 0.0
    subject: str = "the hardened queue"
    killed: list[str] = field(default_factory=list)  # the uuids SIGKILLed
    kills_holding: int = 0
    crashed: dict[str, str] = field(default_factory=dict)  # uuid: the last line of one that died by itself
    started: int = 0
    began: float | None = None
    forced: scene.Scenes = field(default_factory=scene.Scenes)


def run(
    requests: int = 60,
    *,
    seconds: float = 30.0,
    kill_every: float = 0.5,
    per_process: int = 2,
    rescue_after: float = 1.0,
    work: tuple[float, float] = (0.0, 0.05),
    fail: float = 0.0,
    max_attempts: int | None = None,
    backoff: float = 0.05,
    drain: float = 15.0,
    drain_cap: float = 90.0,
    seed: int | None = None,
    scenes: bool = False,
    subject: str = "the hardened queue",
) -> Round:
    """Run `requests` requests through the hardened lab (its example pipelines, nothing else that runs)
    while a worker is SIGKILLed every `kill_every` s for `seconds` s (one holding a job when any does)
    and replaced; wait for every job to end while the queue still moves (until no job or attempt
    changed for `drain` s, or `drain_cap` s in all: a round that moves for longer, a livelock say,
    is judged as it stands); judge the queue.

    `fail` makes handlers fail at random (`max_attempts` attempts, `backoff` s apart at first);
    `scenes` adds the forced scenes (`scenes.py`: a poisoned job, a held claim, a frozen worker,
    order-1 finishes let go together).
    """
    if requests < 1 or seconds <= 0 or kill_every <= 0 or per_process < 1:
        raise PgQueueError(
            f"a chaos round needs requests >= 1, per_process >= 1, seconds and kill_every > 0, got "
            f"{requests}, {per_process}, {seconds}, {kill_every}"
        )
    q, c, rng = _t(), _c(), random.Random(seed)
    opts = hardened.Options(poll=0.5, work=work, fail=fail, give_up=60.0)
    pipe_ids = list(REQUEST)
    did = Did(requests, fail, subject)
    killed, crashed, forced = did.killed, did.crashed, did.forced
    with labs.connect(POC) as conn:
        steps = conn.execute(q["chaos_pipelines"], {"pipe_ids": pipe_ids}).fetchall()
        missing = sorted(set(pipe_ids) - {pipe for pipe, *_ in steps})
        if missing:
            raise PgQueueError(f"lab {POC} has no pipeline {missing}: load the example pipelines first")
        conn.execute(q["rescue_after"], {"seconds": rescue_after})
        if max_attempts is not None:
            conn.execute(q["retries"], {"max_attempts": max_attempts, "base": backoff})
        conn.execute(c["instruments"])
        kinds = conn.execute(q["chaos_processes"], {"pipe_ids": pipe_ids}).fetchall()
        with fleet.Fleet(POC) as workers:

            def replace_the_crashed() -> None:
                # a supervisor's job: a worker that died by itself (the poison, or a bug) is replaced
                for m in workers.members(alive=False):
                    if m.who.uuid not in killed and m.who.uuid not in crashed:
                        crashed[m.who.uuid] = _last_line(m)
                        workers.start(m.who.name, m.who.version, mode="process", worker_options=opts)

            first = workers.launch(
                [(name, version, per_process) for name, version in kinds], mode="process", worker_options=opts
            )
            # the kills start once every worker asks for work: on a loaded machine, starting forty
            # processes can take longer than the round, which would then kill only idle starters
            uuids = [m.who.uuid for m in first]
            until(
                lambda: conn.execute(q["beaten"], {"uuids": uuids}).fetchone()[0] == len(uuids),
                60,
                f"all {len(uuids)} workers asking for work",
            )
            did.began = clock = time.monotonic()  # `clock` runs only while the kills do
            submitted, tick, end = 0, clock, clock + seconds
            # requests arrive over the first two thirds of the kills, so that work runs throughout
            arrive = seconds * 2 / 3
            gate_conns: list[psycopg.Connection] = []
            try:
                while (now := time.monotonic()) < end:
                    due = min(requests, max(1, round(requests * (now - clock) / arrive)))
                    for _ in range(due - submitted):
                        made = scene.submit(conn, pipe_ids, scenes and not forced.poisoned, forced)
                        if scenes and len(forced.gates) < 2 and made > 1:
                            gate_conns.append(scene.hold_finishes(made, forced))
                    submitted = due
                    replace_the_crashed()
                    if scenes:
                        scene.release_finishes(conn, gate_conns, forced, deadline=6.0)
                        elapsed, paused = (now - clock) / seconds, time.monotonic()
                        if forced.claim_tries < 2 and elapsed > 0.2 * (forced.claim_tries + 1):
                            scene.hold_a_claim(conn, forced)
                        if forced.freeze_tries < 3 and elapsed > 0.4 and not scene.froze_once(forced):
                            scene.freeze_a_holder(conn, workers, forced, rescue_after, rng)
                        # a scene stops the kills while it runs: the round's `seconds` of kills go on after
                        paused = time.monotonic() - paused
                        clock, tick, end = clock + paused, tick + paused, end + paused
                    alive = {m.who.uuid: m for m in workers.members(alive=True)}
                    holding = sorted({row[0] for row in conn.execute(q["holders"])} & set(alive))
                    victim = alive[rng.choice(holding or sorted(alive))]
                    workers.hard_kill(victim.who.uuid)
                    killed.append(victim.who.uuid)
                    did.kills_holding += bool(holding)
                    workers.start(victim.who.name, victim.who.version, mode="process", worker_options=opts)
                    tick += kill_every
                    time.sleep(max(0.0, tick - time.monotonic()))  # the cadence of the kills
                for _ in range(requests - submitted):
                    scene.submit(conn, pipe_ids, False, forced)
                scene.release_finishes(conn, gate_conns, forced, deadline=0.0)
            finally:
                for gate in gate_conns:
                    gate.close()

            def ended() -> bool:
                replace_the_crashed()
                return conn.execute(q["open_jobs"]).fetchone()[0] == 0

            # what never ends is judged below: lost, or stopped by what the round did. A loaded
            # machine drains slowly, not never: the wait lasts while jobs and attempts still move
            def progress() -> tuple:
                return tuple(conn.execute(q["drain_progress"]).fetchone())

            drained = until_still(ended, progress, drain, drain_cap)
            did.started = len(workers.members())
            if drained:
                workers.stop(timeout=5.0)
            else:
                # a worker waiting for a lock that is never released (a session-level lock) would
                # not stop, and each would cost its whole grace: the round is judged as it stands
                for m in workers.members(alive=True):
                    workers.hard_kill(m.who.uuid)
        return judge(conn, did)


def judge(conn: psycopg.Connection, did: Did | None = None) -> Round:
    """Judge the queue a round left by its invariants, in the numbered order below (`did`: what the
    round did; none for a lab a test made by hand)."""
    q, c, pipe_ids = _t(), _c(), list(REQUEST)
    did = did or Did()
    killed, crashed, forced, fail = did.killed, did.crashed, did.forced, did.fail
    rescue_after, max_attempts = conn.execute(q["queue_settings"]).fetchone()
    made = jobs_made([tuple(r) for r in conn.execute(q["chaos_pipelines"], {"pipe_ids": pipe_ids})])
    with conn.cursor(row_factory=dict_row) as cur:
        jobs = cur.execute(q["chaos_jobs"]).fetchall()
        pipe_jobs = cur.execute(q["chaos_pipe_jobs"]).fetchall()
        instrumented = cur.execute(c["instrumented"]).fetchone()["instrumented"]
        if not instrumented:  # judged without a round (a test's hand-made lab): no beats were kept
            cur.execute(c["instruments"])
        attempts = cur.execute(c["attempts_of"]).fetchall()
        firsts = {f["job_id"]: f for f in cur.execute(c["first_dead_letters"]).fetchall()}
        overlaps = cur.execute(c["overlapping"]).fetchall()
        poisoned_crashes = [u for u, line in crashed.items() if POISON_MARK in line]
        gone = list({*killed, *crashed})
        left = cur.execute(c["left_behind"], {"gone": gone}).fetchone()
    early = [row[0] for row in conn.execute(q["early_gates"])]
    v = Verdict(did.subject)
    tries: dict[int, list[dict]] = defaultdict(list)
    for a in attempts:
        tries[a["job_id"]].append(a)
    silenced = {*killed, *poisoned_crashes, *forced.frozen}  # workers the round itself stopped

    alive_share = ALIVE_SHARE * rescue_after

    def live_rescue(a: dict) -> bool:
        # by the holder's last beat before the rescue; without kept beats, by who the round stopped
        if a["outcome"] != "rescued":
            return False
        if a["silent_s"] is None:
            return a["process_uuid"] not in silenced
        return a["silent_s"] < alive_share

    def before_death(job_id: int) -> list[dict]:
        # the attempts begun by the job's first dead-letter: those that brought it about
        return tries[job_id][: firsts[job_id]["attempts_before"]]

    # 1. every pipe job finished, or stopped by what the round did (and says)
    def round_killed_it(j: dict) -> bool:
        # dead-lettered once the round had ended max_attempts of its attempts or more: dead-lettered
        # late, or run again after it, the round still stopped it (the attempts' lines say the rest)
        ts = before_death(j["job_id"])
        return len(ts) >= max_attempts and all(
            (t["outcome"] == "rescued" and not live_rescue(t)) or (t["outcome"] == "failed" and fail > 0)
            for t in ts
        )

    own = {j["job_id"] for j in jobs if j["dead"] and round_killed_it(j)}
    stopped = {j["pipe_job_id"] for j in jobs if j["job_id"] in own}
    own |= {j["job_id"] for j in jobs if j["dead"] and j["pipe_job_id"] in stopped and not j["succeeded"]}
    stopped_requests = {
        p["request_id"] for p in pipe_jobs if p["pipe_job_id"] in stopped and p["pipe_order"] == 1
    }
    # jobs past max_attempts still open at the end: never dead-lettered, they run on (not lost);
    # their pipe jobs, and what waits for them, are named with them
    running_on = [
        j["job_id"] for j in jobs if j["recorded"] > max_attempts and not j["finished"] and not j["dead"]
    ]
    held_open = {j["pipe_job_id"] for j in jobs if j["job_id"] in running_on} - stopped
    held_requests = {
        p["request_id"] for p in pipe_jobs if p["pipe_job_id"] in held_open and p["pipe_order"] == 1
    }
    unfinished = [p for p in pipe_jobs if not p["finished"]]
    waiting_on_them = [
        p
        for p in unfinished
        if p["pipe_job_id"] in held_open or (p["pipe_order"] == 2 and p["request_id"] in held_requests)
    ]
    unexplained = [
        p
        for p in unfinished
        if p["pipe_job_id"] not in stopped
        and not (p["pipe_order"] == 2 and p["request_id"] in stopped_requests)
        and p not in waiting_on_them
    ]
    bad_dead = [j for j in jobs if j["dead"] and j["job_id"] not in own]
    finished = len(pipe_jobs) - len(unfinished)
    if bad_dead:
        first = bad_dead[0]
        ts = before_death(first["job_id"])
        from_alive = sum(live_rescue(t) for t in ts)
        early_death = f", before its attempts ran out (max_attempts is {max_attempts})"
        v.wrong.append(
            f"{finished} of {len(pipe_jobs)} pipe jobs finished; {len(bad_dead)} jobs were dead-lettered for "
            f"no reason the round caused: job {first['job_id']} after {len(ts)} attempts"
            f"{early_death if len(ts) < max_attempts else ''} "
            f"({', '.join(str(t['outcome']) for t in ts) or 'none'}; {from_alive} rescued from "
            f"live workers), with {first['job_error']!r}"
        )
    if unexplained:
        never_started = [
            p["request_id"]
            for p in unexplained
            if p["pipe_order"] == 2
            and p["jobs"] == 0
            and all(
                o["finished"]
                for o in pipe_jobs
                if o["request_id"] == p["request_id"] and o["pipe_order"] == 1
            )
        ]
        lost = [
            j["job_id"] for j in jobs if not j["finished"] and not j["dead"] and j["job_id"] not in running_on
        ]
        v.wrong.append(
            f"{finished} of {len(pipe_jobs)} pipe jobs finished, and nothing the round did stops "
            f"{len(unexplained)} of the others: {_few([p['pipe_job_id'] for p in unexplained], 'pipe job')}"
            + (f"; {len(lost)} of their jobs never ended (lost): {_few(lost, 'job')}" if lost else "")
            + (
                f"; the order 2 of {_few(never_started, 'request')} never started though their order 1 "
                "finished: two finishers missed each other at the gate"
                if never_started
                else ""
            )
        )
    if waiting_on_them:
        v.wrong.append(
            f"{finished} of {len(pipe_jobs)} pipe jobs finished; {len(waiting_on_them)} of the others "
            f"({_few([p['pipe_job_id'] for p in waiting_on_them], 'pipe job')}) still wait for "
            f"{_few(running_on, 'job')}, past max_attempts ({max_attempts}) and never dead-lettered"
        )
    if not bad_dead and not unexplained and not waiting_on_them:
        why = ""
        if unfinished:
            exact = all(len(before_death(j)) == max_attempts for j in own if j in firsts)
            ended = (
                f"after {max_attempts} attempts its kills, poison or failures ended"
                if exact
                else f"once its kills, poison or failures had ended {max_attempts} of their attempts"
            )
            why = (
                f", and the {len(unfinished)} others were stopped by what the round did (jobs "
                f"dead-lettered {ended}, and what waited for them)"
            )
        v.held.append(f"{finished} of {len(pipe_jobs)} pipe jobs finished{why}")
    wrong_size = [p["pipe_job_id"] for p in pipe_jobs if p["finished"] and p["jobs"] != made[p["pipe_id"]]]
    if wrong_size:
        v.wrong.append(
            f"{len(wrong_size)} finished pipe jobs made the wrong number of jobs: "
            f"{_few(wrong_size, 'pipe job')}"
        )

    # 2. one success per job
    twice = [j["job_id"] for j in jobs if j["succeeded"] > 1]
    none = [j["job_id"] for j in jobs if j["finished"] and j["succeeded"] == 0]
    dead_won = [j["job_id"] for j in jobs if j["dead"] and j["succeeded"]]
    if twice:
        v.wrong.append(f"{len(twice)} jobs succeeded more than once (run twice): {_few(twice, 'job')}")
    if none:
        v.wrong.append(
            f"{len(none)} finished jobs have no succeeded attempt (finished by a worker whose attempt had "
            f"ended): {_few(none, 'job')}"
        )
    if dead_won:
        v.wrong.append(f"{len(dead_won)} dead-lettered jobs had succeeded: {_few(dead_won, 'job')}")
    if not (twice or none or dead_won):
        done = sum(j["finished"] for j in jobs)
        v.held.append(
            f"each of the {done} finished jobs succeeded exactly once, and no dead-lettered one did"
        )

    # 3. no attempt rescued from a live worker
    rescued = [a for a in attempts if a["outcome"] == "rescued"]
    live = [a for a in rescued if live_rescue(a)]
    if live:
        unkilled = sum(a["process_uuid"] not in silenced for a in live)
        v.wrong.append(
            f"{len(live)} attempts were rescued from workers that were alive ({unkilled} of them never "
            f"stopped by the round; each had beaten less than {alive_share:g} s before, and rescue_after is "
            f"{rescue_after:g} s): your rescue_jobs frees jobs of live workers"
        )
    elif rescued:
        silences = [a["silent_s"] for a in rescued if a["silent_s"] is not None]
        how = (
            f"each holder had been silent for {alive_share:g} s or more, the least {min(silences):.2f} s "
            f"(rescue_after is {rescue_after:g} s)"
            if len(silences) == len(rescued)
            else "each holder was a worker the round had stopped"  # no beats kept: judged by who
        )
        v.held.append(f"none of the {len(rescued)} rescued attempts was taken from a live worker: {how}")
    else:
        v.held.append("no attempt was rescued from a live worker (no attempt was rescued at all)")

    # 4. no job held by two workers at once
    if overlaps:
        o = overlaps[0]
        v.wrong.append(
            f"{len({o['job_id'] for o in overlaps})} jobs were held by two workers at once (the time "
            f"ranges of their attempts overlap): job {o['job_id']}, by {o['first']} and {o['second']}"
        )
    else:
        v.held.append(f"no two of the {len(attempts)} attempts at one job overlap in time")

    # 5. no lease left behind
    if left["jobs"] or left["attempts"]:
        hint = ""
        if left["jobs"] and left["jobs"] == left["past_max"]:
            hint = ": each is a job past max_attempts, still run when the round ended (never dead-lettered)"
        elif left["jobs"]:
            hint = (
                ": jobs of killed workers were never freed (a rescue_jobs that frees nothing, or their rows "
                "still locked by a transaction that never ends)"
            )
        elif left["attempts"] == left["after_dead"]:
            # a lease leaves job_dead_timestamp as it was: the attempt runs at a job that ended
            hint = ": each began at a job already dead-lettered (your claim_jobs takes dead-lettered jobs)"
        elif left["attempts"]:
            hint = (
                ": a job ended while another worker's attempt at it still ran (who may hand over: hold_jobs)"
            )
        v.wrong.append(
            f"leases were left behind at the end: {left['jobs']} jobs still leased to workers that are gone, "
            f"{left['attempts']} attempts still running at jobs that ended or of workers that are gone{hint}"
        )
    else:
        v.held.append(
            "no lease was left behind: no job is still leased to a worker that was killed or crashed, and no "
            "attempt still runs at a job that ended"
        )

    # then: backoffs, attempts counted, the poison, the gate, crashes, the scenes
    early_tries = [a for a in attempts if a["before"] == "failed" and a["after_s"] < a["backoff_s"] - 0.001]
    after_failure = [a for a in attempts if a["before"] == "failed"]
    if early_tries:
        e = early_tries[0]
        v.wrong.append(
            f"{len(early_tries)} attempts began before their job's backoff ended: job {e['job_id']} again "
            f"{e['after_s']:.3f} s after a failed attempt, its backoff {e['backoff_s']:g} s: your claim_jobs "
            "takes jobs that are not due yet (job_run_after)"
        )
    elif after_failure:
        v.held.append(f"each of the {len(after_failure)} attempts after a failed one waited out its backoff")
    over = [j["job_id"] for j in jobs if j["recorded"] > max_attempts]
    v.wrong += dead_letters.past_max_attempts(over, tries, firsts, max_attempts)
    unrecorded = [j["job_id"] for j in jobs if j["recorded"] != j["job_attempts"]]
    if unrecorded:
        v.wrong.append(
            f"{len(unrecorded)} jobs ran attempts job_attempts does not show: {_few(unrecorded, 'job')}"
        )
    for job in forced.poisoned:
        ts, dead = tries[job], any(j["dead"] for j in jobs if j["job_id"] == job)
        if dead and job in own and job not in over:
            v.held.append(
                f"poisoned job {job}, which crashes every worker that runs it, was dead-lettered after its "
                f"{len(ts)} attempts ({len(poisoned_crashes)} workers crashed on it)"
            )
    if early:
        v.wrong.append(f"order-2 work began before order 1 had finished in {_few(early, 'request')}")
    for gate in forced.gates:
        lower = [p for p in pipe_jobs if p["request_id"] == gate["request"] and p["pipe_order"] == 1]
        upper = [p for p in pipe_jobs if p["request_id"] == gate["request"] and p["pipe_order"] == 2]
        said = (
            f"request {gate['request']}'s order-1 finishes, held by the round and let go together "
            f"({gate['waiting']} of {gate['pipe_jobs']} waiting)"
        )
        if gate["waiting"] and all(p["finished"] for p in lower) and upper:
            if all(p["jobs"] for p in upper):
                v.held.append(f"{said}, started its order 2")
            else:
                v.wrong.append(
                    f"{said}, all finished, but its order 2 never started: your pipe_job_takes_turn lets "
                    "two finishers of a request check the gate at once (one lock per request, until commit)"
                )
    strange = [line for line in crashed.values() if POISON_MARK not in line]
    doubled = [line for line in strange if "job_attempts_running" in line]
    if doubled:
        # job_attempts allows one running attempt per job: the second worker's lease failed on it
        v.wrong.append(
            f"{len(doubled)} times a job was handed to a second worker while the first one's attempt ran: "
            "job_attempts refused the second running attempt, and that worker crashed: your claim_jobs "
            "does not lock the jobs it takes (FOR UPDATE)"
        )
        strange = [line for line in strange if line not in doubled]
    if strange:
        v.wrong.append(
            f"{len(strange)} workers crashed (the round did not kill them), the first with: {strange[0]}"
        )
    v.held += forced.held
    v.wrong += forced.wrong
    return Round(
        requests=did.requests,
        pipe_jobs=len(pipe_jobs),
        pipe_jobs_finished=finished,
        jobs=len(jobs),
        jobs_succeeded=sum(j["finished"] and j["succeeded"] == 1 for j in jobs),
        jobs_dead=sum(j["dead"] for j in jobs),
        workers_started=did.started,
        kills=len(killed),
        kills_holding=did.kills_holding,
        rescued=len(rescued),
        rescued_from_the_living=len(live),
        failed=sum(j["failed"] for j in jobs),
        seconds=time.monotonic() - did.began if did.began is not None else 0.0,
        verdict=v,
    )


def _last_line(member: fleet.Member) -> str:
    """The last line a worker process printed (its error, when it crashed)."""
    try:
        lines = [line for line in member.log_path.read_text(errors="replace").splitlines() if line.strip()]
    except (OSError, AttributeError):
        return f"worker {member.who} (no log)"
    return f"worker {member.who}: {lines[-1].strip() if lines else 'no output'}"


def _few(ids: list, what: str) -> str:
    """`ids` named with what they are ('pipe jobs 2, 5'), the first ten of them."""
    listed = ", ".join(map(str, ids[:10])) + (" ..." if len(ids) > 10 else "")
    return f"{what}{'s' if len(ids) != 1 else ''} {listed}"
