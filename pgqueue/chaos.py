"""A chaos round: hardened worker processes SIGKILLed at random while requests run, then what broke."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

import psycopg
from psycopg.rows import dict_row

from pgqueue import fleet, hardened, labs, queries
from pgqueue.check.core import Verdict, install, written
from pgqueue.errors import PgQueueError
from pgqueue.wait import Timeout, until

POC = "hardened"
# A request as the example's request 50 makes it: four order-1 pipelines, then the report (order 2).
REQUEST = (1, 2, 3, 5, 4)


# What a learner may put in place of the kit's own in a round on their version (lesson 12).
YOURS = ("claim_jobs", "rescue_jobs", "hold_jobs", "pipe_job_takes_turn")


def _t() -> queries.Queries:
    return labs.step(POC, "find_job").lesson


@dataclass(frozen=True)
class Round:
    """What a chaos round did and found. `problems` is empty when the queue held."""

    requests: int
    pipe_jobs: int
    pipe_jobs_finished: int
    jobs: int
    jobs_succeeded: int  # finished, with exactly one succeeded attempt
    jobs_dead: int  # dead-lettered
    workers_started: int
    kills: int
    kills_holding: int  # of the kills, those of a worker that held a job
    rescued: int  # attempts ended by a rescue
    rescued_from_the_living: int  # of those, attempts of workers nobody killed (a pulse came late)
    failed: int  # attempts ended by a handler's failure
    seconds: float
    problems: list[str] = field(default_factory=list)

    @property
    def held(self) -> bool:
        """Whether nothing broke: no job lost or run twice, no gate opened early, no lease left behind."""
        return not self.problems

    def summary(self) -> str:
        """One paragraph for people: what ran, what was killed, what broke (or that it held)."""
        lines = [
            f"{self.requests} requests, {self.pipe_jobs} pipe jobs ({self.pipe_jobs_finished} finished), "
            f"{self.jobs} jobs ({self.jobs_succeeded} succeeded once, {self.jobs_dead} dead-lettered) "
            f"in {self.seconds:.1f} s",
            f"{self.kills} workers SIGKILLed ({self.kills_holding} holding a job), {self.workers_started} "
            f"started; attempts rescued: {self.rescued} ({self.rescued_from_the_living} from live "
            f"workers), failed: {self.failed}",
        ]
        lines += [f"BROKEN: {p}" for p in self.problems] or ["it held"]
        return "\n".join(lines)


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
    drain: float = 45.0,
    seed: int | None = None,
) -> Round:
    """Run `requests` requests through the hardened lab while a worker is SIGKILLed every `kill_every`
    s for `seconds` s (one holding a job when any does) and replaced; wait up to `drain` s more for
    every job to end; say what happened.

    The lab must hold the example pipelines and may hold nothing else that runs: the round
    judges every job in it. `fail` makes handlers fail at random (then `max_attempts` attempts,
    `backoff` s apart at first, before a job is dead-lettered).
    """
    if requests < 1 or seconds <= 0 or kill_every <= 0 or per_process < 1:
        raise PgQueueError(
            f"a chaos round needs requests >= 1, per_process >= 1, seconds and kill_every > 0, got "
            f"{requests}, {per_process}, {seconds}, {kill_every}"
        )
    q, rng = _t(), random.Random(seed)
    opts = hardened.Options(poll=0.5, work=work, fail=fail, give_up=60.0)
    pipe_ids = list(REQUEST)
    began = time.monotonic()
    with labs.connect(POC) as conn:
        steps = conn.execute(q["chaos_pipelines"], {"pipe_ids": pipe_ids}).fetchall()
        missing = sorted(set(pipe_ids) - {pipe for pipe, *_ in steps})
        if missing:
            raise PgQueueError(f"lab {POC} has no pipeline {missing}: load the example pipelines first")
        conn.execute(q["rescue_after"], {"seconds": rescue_after})
        if max_attempts is not None:
            conn.execute(q["retries"], {"max_attempts": max_attempts, "base": backoff})
        kinds = conn.execute(q["chaos_processes"], {"pipe_ids": pipe_ids}).fetchall()
        killed: list[str] = []
        kills_holding = 0
        with fleet.Fleet(POC) as workers:
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
            began = time.monotonic()
            submitted, tick, end = 0, began, began + seconds
            # requests arrive over the first two thirds of the kills, so that work runs throughout
            arrive = seconds * 2 / 3
            while (now := time.monotonic()) < end:
                due = min(requests, max(1, round(requests * (now - began) / arrive)))
                with conn.transaction():
                    for _ in range(due - submitted):
                        conn.execute(q["chaos_request"], {"pipe_ids": pipe_ids})
                submitted = due
                alive = {m.who.uuid: m for m in workers.members(alive=True)}
                holding = sorted({row[0] for row in conn.execute(q["holders"])} & set(alive))
                victim = alive[rng.choice(holding or sorted(alive))]
                workers.hard_kill(victim.who.uuid)
                killed.append(victim.who.uuid)
                kills_holding += bool(holding)
                workers.start(victim.who.name, victim.who.version, mode="process", worker_options=opts)
                tick += kill_every
                time.sleep(max(0.0, tick - time.monotonic()))  # the cadence of the kills
            with conn.transaction():
                for _ in range(requests - submitted):
                    conn.execute(q["chaos_request"], {"pipe_ids": pipe_ids})
            try:
                until(lambda: conn.execute(q["open_jobs"]).fetchone()[0] == 0, drain, "every job ending")
                drained = True
            except Timeout:
                drained = False
            started = len(workers.members())
            # a worker that ended without being killed crashed: its last line says why
            crashed = [_last_line(m) for m in workers.members(alive=False) if m.who.uuid not in killed]
            workers.stop(timeout=5.0)
        return judge(
            conn,
            requests=requests,
            killed=killed,
            kills_holding=kills_holding,
            started=started,
            drained=drained,
            began=began,
            crashed=crashed,
        )


def on_yours(
    yours: dict[str, str],
    requests: int = 12,
    *,
    seconds: float = 8.0,
    drain: float = 25.0,
    seed: int | None = None,
) -> Round:
    """A short chaos round on the hardened lab rebuilt with the learner's routines in place of the kit's.

    `yours` maps a routine of `YOURS` to the SQL that creates it (a trigger function with its
    trigger). The lab is rebuilt with the example pipelines, each routine replaced, then
    `run(requests, seconds=...)` kills and replaces workers while the requests run. SQL that
    PostgreSQL refuses ends the round before it starts, with PostgreSQL's words as its problem.
    """
    unknown = sorted(set(yours) - set(YOURS))
    if unknown:
        raise PgQueueError(f"a round on your version replaces {', '.join(YOURS)}; not {', '.join(unknown)}")
    labs.reset(POC)
    checks = queries.load("clients/check.sql")
    verdict = Verdict("your hardened queue")
    with labs.connect(POC) as conn:
        conn.execute(labs.step(POC, "pipelines").example_sql)
        if "pipe_job_takes_turn" in yours:
            conn.execute(checks["gate_drop_trigger"])  # the trigger depends on the kit's function
        for routine, text in yours.items():
            if written(text, verdict) is None or not install(conn, text, verdict, replaces=[routine]):
                refused = [f"{routine}: {verdict.wrong[-1]}"]
                return Round(requests, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0.0, problems=refused)
        conn.execute(checks["revoke_from_public"])  # as step 08 left every other routine
    return run(requests, seconds=seconds, drain=drain, seed=seed)


def judge(
    conn: psycopg.Connection,
    *,
    requests: int = 0,
    killed: list[str] | None = None,
    kills_holding: int = 0,
    started: int = 0,
    drained: bool = True,
    began: float | None = None,
    crashed: list[str] | None = None,
) -> Round:
    """Read what a round left in the lab and name every way the queue broke (`drained`: every job
    ended in time; `killed`: the uuids of the workers SIGKILLed; `crashed`: a line per worker that
    ended by itself)."""
    q, pipe_ids, killed, crashed = _t(), list(REQUEST), killed or [], crashed or []
    settings = conn.execute(q["queue_settings"]).fetchone()
    max_attempts = settings[1]
    made = jobs_made([tuple(r) for r in conn.execute(q["chaos_pipelines"], {"pipe_ids": pipe_ids})])
    with conn.cursor(row_factory=dict_row) as cur:
        jobs = cur.execute(q["chaos_jobs"]).fetchall()
        pipe_jobs = cur.execute(q["chaos_pipe_jobs"]).fetchall()
        held = cur.execute(q["held_by"], {"uuids": killed}).fetchone()
    early = [row[0] for row in conn.execute(q["early_gates"])]
    problems = []
    if crashed:
        problems.append(f"{len(crashed)} workers crashed, the first with: {crashed[0]}")
    if not drained:
        still = [j["job_id"] for j in jobs if not j["finished"] and not j["dead"]]
        problems.append(f"{len(still)} jobs never ended (lost): {_few(still)}")
    twice = [j["job_id"] for j in jobs if j["succeeded"] > 1]
    if twice:
        problems.append(f"{len(twice)} jobs succeeded more than once (run twice): {_few(twice)}")
    unsucceeded = [j["job_id"] for j in jobs if j["finished"] and j["succeeded"] == 0]
    if unsucceeded:
        problems.append(f"{len(unsucceeded)} finished jobs have no succeeded attempt: {_few(unsucceeded)}")
    unrecorded = [j["job_id"] for j in jobs if j["recorded"] != j["job_attempts"]]
    if unrecorded:
        problems.append(f"{len(unrecorded)} jobs ran attempts job_attempts does not show: {_few(unrecorded)}")
    # a dead job is one out of attempts, or one given up with its pipe job when another job of
    # that pipe job ran out of attempts (a gatherer would wait for that job's set forever)
    exhausted = {
        j["pipe_job_id"]
        for j in jobs
        if j["dead"] and j["recorded"] == max_attempts and j["last_outcome"] in ("failed", "rescued")
    }
    bad_dead = [
        j["job_id"]
        for j in jobs
        if j["dead"]
        and (
            not j["job_error"]
            or j["succeeded"]
            or j["recorded"] > max_attempts
            or j["pipe_job_id"] not in exhausted
        )
    ]
    if bad_dead:
        problems.append(
            f"{len(bad_dead)} jobs were dead-lettered without their error, or before their "
            f"{max_attempts} attempts while no job of their pipe job ran out of them: {_few(bad_dead)}"
        )
    if early:
        problems.append(f"order-2 work began before order 1 had finished in requests {_few(early)}")
    wrong = [p["pipe_job_id"] for p in pipe_jobs if p["finished"] and p["jobs"] != made[p["pipe_id"]]]
    if wrong:
        problems.append(f"{len(wrong)} finished pipe jobs made the wrong number of jobs: {_few(wrong)}")
    stuck = [
        p["pipe_job_id"]
        for p in pipe_jobs
        if not p["finished"] and not p["has_dead"] and not _waits_for_dead_order_1(p, pipe_jobs)
    ]
    if drained and stuck:
        problems.append(f"{len(stuck)} pipe jobs never finished, and no dead job explains it: {_few(stuck)}")
    if held["jobs"] or held["attempts"]:
        problems.append(
            f"killed workers still hold {held['jobs']} jobs and {held['attempts']} running attempts"
        )
    return Round(
        requests=requests,
        pipe_jobs=len(pipe_jobs),
        pipe_jobs_finished=sum(p["finished"] for p in pipe_jobs),
        jobs=len(jobs),
        jobs_succeeded=sum(j["finished"] and j["succeeded"] == 1 for j in jobs),
        jobs_dead=sum(j["dead"] for j in jobs),
        workers_started=started,
        kills=len(killed),
        kills_holding=kills_holding,
        rescued=sum(j["rescued"] for j in jobs),
        rescued_from_the_living=held["rescued_from_the_living"],
        failed=sum(j["failed"] for j in jobs),
        seconds=time.monotonic() - began if began is not None else 0.0,
        problems=problems,
    )


def _waits_for_dead_order_1(pipe_job: dict, pipe_jobs: list[dict]) -> bool:
    """Whether an order-2 pipe job waits, as it should, for an order-1 one that a dead job stopped."""
    return pipe_job["pipe_order"] == 2 and any(
        p["request_id"] == pipe_job["request_id"] and p["pipe_order"] == 1 and p["has_dead"]
        for p in pipe_jobs
    )


def _last_line(member: fleet.Member) -> str:
    """The last line a worker process printed (its error, when it crashed)."""
    try:
        lines = [line for line in member.log_path.read_text(errors="replace").splitlines() if line.strip()]
    except (OSError, AttributeError):
        return f"worker {member.who} (no log)"
    return f"worker {member.who}: {lines[-1].strip() if lines else 'no output'}"


def _few(ids: list) -> str:
    return ", ".join(map(str, ids[:10])) + (" ..." if len(ids) > 10 else "")
