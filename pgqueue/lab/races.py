"""Races made reproducible: one schedule forced step by step on two connections, or every schedule
by many trials whose racers a barrier releases together."""

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from pgqueue import queries
from pgqueue.queues import client, designs, labs
from pgqueue.queues.heartbeats import Identity
from pgqueue.queues.notify_listen import POC, Options, Worker
from pgqueue.queues.single_call import POC as SINGLE_CALL
from pgqueue.wait import until


@dataclass(frozen=True)
class HeartbeatRace:
    """What two workers of one process heard when they beat for the same single job."""

    serializable: bool
    first: str  # what the first worker heard
    second: str  # what the second heard
    retries: int  # serialization failures the second worker retried
    owner: str  # the uuid the job is assigned to
    second_events: str = ""  # what the second worker reported, one event per line
    isolation: str = ""  # the heartbeats' isolation level, e.g. "REPEATABLE READ"
    uuids: tuple[str, str] = ("", "")  # the first and the second worker's uuid

    def table(self):
        """One row per worker: what it heard, how often it retried, whether the job is assigned to it."""
        import pandas as pd

        def said(answer: str) -> str:
            return f"job {json.loads(answer)['job_id']}" if answer.startswith("{") else answer or "(nothing)"

        return pd.DataFrame(
            {
                "isolation": [self.isolation] * 2,
                "worker": ["first", "second"],
                "heard": [said(self.first), said(self.second)],
                "retries": [0, self.retries],
                "owns the job": [self.owner == u for u in self.uuids],
            }
        )

    def job_ids(self) -> list[int]:
        """The job ids each worker received (0, 1 or 2 of them)."""
        return [json.loads(a)["job_id"] for a in (self.first, self.second) if a.startswith("{")]

    @property
    def double_handout(self) -> bool:
        """Whether both workers were handed the job."""
        return len(self.job_ids()) == 2


def waiting_on_lock(pid: int, poc: str = POC, *, conn: psycopg.Connection | None = None) -> bool:
    """Whether backend `pid` waits for a lock another holds (asked on `conn`, else on `poc`'s lab)."""
    if conn is None:
        with labs.connect(poc) as own:
            return waiting_on_lock(pid, conn=own)
    row = conn.execute(queries.load("clients/races.sql")["wait_event"], {"pid": pid}).fetchone()
    return row is not None and row[0] == "Lock"


def heartbeat_race(
    name: str,
    version: str,
    serializable: bool,
    retries: int = 20,
    isolation: psycopg.IsolationLevel | None = None,
) -> HeartbeatRace:
    """Two workers of `name version` beat at once while one job waits for that process.

    The heartbeats run SERIALIZABLE when `serializable`, else READ COMMITTED, unless `isolation`
    names another level (REPEATABLE READ, say) for both.

    The interleaving is forced: the first worker's heartbeat takes the job inside an open
    transaction; the second beats (for real, with the worker's own retry loop) and blocks on
    the job's row lock; only then does the first commit.
    """
    opts = Options(serializable=serializable, retries=retries)
    first_who, second_who = Identity.new(name, version), Identity.new(name, version)
    second = Worker(second_who, opts)
    level = psycopg.IsolationLevel.SERIALIZABLE if serializable else psycopg.IsolationLevel.READ_COMMITTED
    level = isolation if isolation is not None else level
    with client.connect(POC) as first, client.connect(POC) as b_client:
        a, b = first.conn, b_client.conn
        a.isolation_level = b.isolation_level = level
        first.listen(first_who)
        b_client.listen(second_who)

        heard_b: list[str] = []

        def second_worker_beats() -> None:
            second.heartbeat(b)  # blocks, then commits or retries as the real worker does
            heard_b.extend(n.payload for n in b.notifies(timeout=opts.timeout, stop_after=1))

        racer = threading.Thread(target=second_worker_beats)
        with a.transaction():
            first.beat(first_who)  # takes the job; its answer waits for the commit
            racer.start()
            until(lambda: waiting_on_lock(b.info.backend_pid), 10, "the second worker blocking")
        # committed: the second worker's UPDATE of the job row now goes ahead
        racer.join(opts.timeout + 5)
        heard_a = [n.payload for n in a.notifies(timeout=opts.timeout, stop_after=1)]
        owner = a.execute(
            queries.load("clients/races.sql")["owner"], {"name": name, "version": version}
        ).fetchone()[0]
    retried = second.log.kinds().count("retry")
    said = "\n".join(f"{e.kind} {e.detail}" for e in second.log.events())
    return HeartbeatRace(
        serializable,
        heard_a[0] if heard_a else "",
        heard_b[0] if heard_b else "",
        retried,
        owner,
        said,
        level.name.replace("_", " "),
        (first_who.uuid, second_who.uuid),
    )


@dataclass(frozen=True)
class ClaimRace:
    """What two gatherers heard when both asked find_job for the same complete batch."""

    first: str
    second: str


def claim_race(name: str, version: str) -> ClaimRace:
    """Two gathering workers of `name version` ask find_job (multi mode) for one batch at once.

    Multi mode locks no rows, so both pick the same batch. The first claims it inside an open
    transaction; the second's claim insert waits on the claim's primary key; then the first
    commits, and the second learns it lost.
    """
    first, second = Identity.new(name, version), Identity.new(name, version)
    with client.connect(SINGLE_CALL) as a, client.connect(SINGLE_CALL) as b:
        heard_b: list[str] = []
        racer = threading.Thread(target=lambda: heard_b.append(b.ask(second, multi=True)))
        with a.conn.transaction():
            heard_a = a.ask(first, multi=True)
            racer.start()
            until(
                lambda: waiting_on_lock(b.conn.info.backend_pid, SINGLE_CALL),
                10,
                "the second gatherer waiting on the claim",
            )
        racer.join(10)
    return ClaimRace(heard_a, heard_b[0] if heard_b else "")


@dataclass(frozen=True)
class GateRace:
    """Whether the next order started when two pipe jobs of one order finished at once."""

    finished: tuple[int, int]
    waiting: int  # the next-order pipe job
    started: bool
    waited: bool = False  # the second finisher waited for a lock while the first one's transaction was open


Connect = Callable[[], psycopg.Connection]


def _lab_connect(connect: Connect | None) -> Connect:
    """The connections a gate race uses: `connect`, or the lesson's single-call lab."""
    return connect if connect is not None else lambda: labs.connect(SINGLE_CALL)


def order_gate_race(first: int, second: int, waiting: int, *, connect: Connect | None = None) -> GateRace:
    """Finish pipe jobs `first` and `second` (one request, one order) in two concurrent transactions.

    Each trigger checks whether the other pipe job has finished. The first transaction stays open
    while the second finishes; if the second has to wait (a lock), the first commits and the
    second goes on. Then both are committed, and we look whether `waiting` got its entry job.
    `connect` makes the connections (a scratch lab's, say); the lesson's lab by default.
    """
    q = queries.load("clients/races.sql")
    with _lab_connect(connect)() as conn:
        waited = _second_while_first_open(
            connect,
            q["finish_pipe_job"],
            {"pipe_job_id": first},
            q["finish_pipe_job"],
            {"pipe_job_id": second},
        )[0]
        started = conn.execute(q["entry_job_of"], {"pipe_job_id": waiting}).fetchone()[0] > 0
    return GateRace((first, second), waiting, started, waited)


def late_pipe_job_race(pipe: int = 2, next_pipe: int = 4, *, connect: Connect | None = None) -> GateRace:
    """A request's only pipe job of `pipe` finishes while a pipe job of `next_pipe` (the next order)
    is inserted for the same request, in two concurrent transactions, the finisher's held open.

    The insert's trigger asks whether the lower order has finished; the finisher's asks which
    next-order pipe jobs wait. Without turns each misses the other's uncommitted row and the new
    pipe job never starts; with them the insert waits, then sees the finish and starts at once.
    """
    q = queries.load("clients/races.sql")
    with _lab_connect(connect)() as conn:
        first, request_id = conn.execute(q["late_trial"], {"pipe": pipe}).fetchone()
        waited, inserted = _second_while_first_open(
            connect,
            q["finish_pipe_job"],
            {"pipe_job_id": first},
            q["late_pipe_job"],
            {"request_id": request_id, "pipe": next_pipe},
        )
        started = conn.execute(q["entry_job_of"], {"pipe_job_id": inserted}).fetchone()[0] > 0
    return GateRace((first, first), inserted, started, waited)


def _second_while_first_open(
    connect: Connect | None, first_sql: str, first_params: dict, second_sql: str, second_params: dict
) -> tuple[bool, object]:
    """Run `first_sql` in a transaction held open while `second_sql` runs in another; commit both. Whether
    the second waited for a lock while the first was open, and its first value (None: no row)."""
    connect = _lab_connect(connect)
    with connect() as a, connect() as b, connect() as watch:
        b_done = threading.Event()
        b_failed: list[psycopg.Error] = []
        b_got: list[object] = [None]

        def run_second() -> None:
            try:
                with b.transaction():
                    cur = b.execute(second_sql, second_params)
                    row = cur.fetchone() if cur.description else None
                    b_got[0] = row[0] if row else None
                    b_done.set()
            except psycopg.Error as exc:  # raised again below, in the caller's thread
                b_failed.append(exc)
                b_done.set()

        with a.transaction():
            a.execute(first_sql, first_params)
            racer = threading.Thread(target=run_second)
            racer.start()
            until(
                lambda: b_done.is_set() or waiting_on_lock(b.info.backend_pid, conn=watch),
                10,
                "the second transaction finishing or waiting",
            )
            waited = not b_done.is_set()
            if b_done.is_set():
                until(lambda: not racer.is_alive(), 10, "the second transaction committing")
        racer.join(10)
        if b_failed:
            raise b_failed[0]
    return waited, b_got[0]


@dataclass(frozen=True)
class GateTrials:
    """How the order gate fared over many trials of two finishers released together."""

    trials: int
    started: int  # the next order started, once
    stalled: int  # both pipe jobs finished, and the next order never started
    deadlocks: int  # trials where a finisher was chosen as a deadlock victim
    twice: int = 0  # the next order started twice
    failed: int = 0  # trials where a finisher failed with another error
    error: str = ""  # the first such error, in PostgreSQL's words

    @property
    def held(self) -> bool:
        """Whether the gate opened exactly once in every trial."""
        return self.started == self.trials

    def row(self) -> dict[str, int]:
        """The counts, for one row of a table of versions."""
        return {
            "trials": self.trials,
            "started": self.started,
            "stalled": self.stalled,
            "deadlocks": self.deadlocks,
            "twice": self.twice,
        }


def order_gate_trials(
    trials: int = 100,
    pipe: int = 2,
    next_pipe: int = 4,
    *,
    connect: Connect | None = None,
    stop_after: int | None = None,
    hold: bool = False,
) -> GateTrials:
    """Finish two pipe jobs of one request and order at the same moment, `trials` times.

    Each trial makes a fresh request (two pipe jobs of `pipe`, one of `next_pipe`, one order
    later); a barrier releases two finishers together, each on its own connection with a plain
    UPDATE (what finish_pipe does last), so the schedules vary from trial to trial: the second
    UPDATE before, during or after the first one's trigger. Then it counts whether the
    next-order pipe job got its entry job.

    `connect` makes the connections (a scratch lab's, say); the lesson's lab by default.
    `stop_after` ends the trials early once that many trials had a deadlock or another error
    (each deadlock costs PostgreSQL's deadlock_timeout, a second by default); `trials` then
    says how many ran. `hold` installs a kit trigger that holds each finisher right after its
    UPDATE has locked its own row, and lets both go together once both are held: every trial
    then meets the schedule a row-lock fix deadlocks on, with no timing to tune.
    """
    q = queries.load("clients/races.sql")
    connect = _lab_connect(connect)
    release = threading.Barrier(3, timeout=30)
    current: list[int] = []
    victims: list[int] = []  # trial numbers where a finisher was a deadlock victim
    errors: list[tuple[int, str]] = []  # trial numbers where a finisher failed otherwise
    go_on = [True]
    trial_no = [0]  # the trial under way, for the finishers' reports
    pids = [0, 0]  # the finishers' backends, to see them held
    done_now: set[int] = set()  # the finishers through this trial's UPDATE (or failed)

    def finisher(which: int) -> None:
        with connect() as conn:
            pids[which - 1] = conn.info.backend_pid
            if hold:
                conn.execute(q["gate_hold_on"])
            while True:
                release.wait()  # the trial is ready: go (or stop)
                if not go_on[0]:
                    return
                try:
                    conn.execute(q["finish_pipe_job"], {"pipe_job_id": current[which]})
                except psycopg.errors.DeadlockDetected:
                    victims.append(trial_no[0])
                except psycopg.Error as exc:
                    errors.append((trial_no[0], exc.diag.message_primary or str(exc)))
                done_now.add(which)
                release.wait()  # done

    racers = [threading.Thread(target=finisher, args=(i,), daemon=True) for i in (1, 2)]
    started = stalled = twice = ran = 0
    with connect() as conn:
        if hold:
            conn.execute(q["install_gate_hold"])
        for racer in racers:
            racer.start()
        try:
            for trial in range(trials):
                trial_no[0] = trial
                params = {"pipe": pipe, "next_pipe": next_pipe}
                current[:] = [row[0] for row in conn.execute(q["gate_trial"], params)]
                done_now.clear()
                if hold:
                    conn.execute(q["close_gate_hold"])
                release.wait()
                if hold:
                    until(
                        lambda: all(i in done_now or waiting_on_lock(pids[i - 1], conn=conn) for i in (1, 2)),
                        30,
                        "both finishers held after their row lock",
                    )
                    conn.execute(q["open_gate_hold"])
                release.wait()
                ran += 1
                entries = conn.execute(q["entry_job_of"], {"pipe_job_id": current[0]}).fetchone()[0]
                failed = trial in victims or any(t == trial for t, _ in errors)
                started += entries == 1
                twice += entries > 1
                stalled += entries == 0 and not failed
                bad = len(set(victims) | {t for t, _ in errors})
                if stop_after is not None and bad >= stop_after:
                    break
        finally:
            go_on[0] = False
            release.wait()
    for racer in racers:
        racer.join(10)
    failed_trials = {t for t, _ in errors}
    return GateTrials(
        ran, started, stalled, len(set(victims)), twice, len(failed_trials), errors[0][1] if errors else ""
    )


HARDENED = "hardened"


def _hardened_ask(conn: psycopg.Connection, who: Identity) -> int:
    """The id of the one job `who` is handed by the hardened find_job."""
    return designs.get(HARDENED).client(conn).claim(who)[0]["job_id"]


def rescue_meets_a_finisher() -> str:
    """The kit's hardened rescue_jobs, forced to meet a silent worker's job whose row is locked right
    now (its worker came back and is finishing it): "wait", "take" or "pass over", as it did.

    The rescue runs with a 2 s lock_timeout while the finisher's transaction stays open: a
    rescue that waits for the row ends in that timeout instead of hanging.
    """
    q, lesson = queries.load("clients/races.sql"), labs.step(HARDENED, "find_job").lesson
    with labs.scratch(HARDENED, examples=True) as lab, lab.connect() as conn:
        conn.execute(lesson["rescue_after"], {"seconds": 1})
        silent = Identity.new("first_process", "1.9.2")
        job = _hardened_ask(conn, silent)
        conn.execute(lesson["age_heartbeat"], {"uuid": silent.uuid, "seconds": 60})
        with lab.connect(autocommit=False) as finisher, lab.connect() as rescuer:
            finisher.execute(q["lock_job_row"], {"job_id": job})
            rescuer.execute(q["lock_timeout"], {"ms": "2000"})
            try:
                rescuer.execute(q["rescue"])
            except psycopg.errors.LockNotAvailable:
                return "wait"
            finally:
                finisher.rollback()
        holder = conn.execute(q["job_holder"], {"job_id": job}).fetchone()[0]
    return "pass over" if holder == silent.uuid else "take"


@dataclass(frozen=True)
class LateHandOver:
    """A job rescued from slow worker A and handed over by B: what A's late hand-over and B's repeat did."""

    late: str  # A's create_jobs: "success", "a no-op" or "an error: ..."
    repeat: str  # B's second create_jobs of the same job

    def answers(self) -> tuple[str, str]:
        """Both, as the lesson's choices (an error without its words)."""
        return (self.late.split(":")[0], self.repeat.split(":")[0])


def late_hand_over() -> LateHandOver:
    """Worker A's job is rescued (A went silent), B takes and hands it over, then A hands it over
    late and B repeats its own hand-over; each outcome read from the jobs it created."""
    q, lesson = queries.load("clients/races.sql"), labs.step(HARDENED, "find_job").lesson
    with labs.scratch(HARDENED, examples=True) as lab, lab.connect() as conn:
        conn.execute(lesson["rescue_after"], {"seconds": 1})
        a, b = Identity.new("first_process", "1.9.2"), Identity.new("first_process", "1.9.2")
        job = _hardened_ask(conn, a)
        conn.execute(lesson["age_heartbeat"], {"uuid": a.uuid, "seconds": 60})
        conn.execute(q["rescue"])
        if _hardened_ask(conn, b) != job:
            raise RuntimeError(f"late_hand_over: B was not handed job {job} after its rescue")

        def hand_over(who: Identity) -> str:
            before = conn.execute(q["children_of"], {"job_id": job}).fetchone()[0]
            try:
                designs.get(HARDENED).client(conn).hand_over(who, [job], [{}])
            except psycopg.Error as exc:
                return f"an error: {exc.sqlstate} {exc.diag.message_primary}"
            after = conn.execute(q["children_of"], {"job_id": job}).fetchone()[0]
            return "success" if after > before else "a no-op"

        if hand_over(b) != "success":
            raise RuntimeError(f"late_hand_over: B's hand-over of job {job} did not create its next job")
        return LateHandOver(late=hand_over(a), repeat=hand_over(b))
