"""Lesson 03's checker: the learner's `answer_heartbeat`, heard beat by beat on real LISTEN connections."""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from pgqueue import queries
from pgqueue.check.core import Verdict, checker, checks, install, said
from pgqueue.queues import labs
from pgqueue.queues.heartbeats import Identity, send_heartbeat
from pgqueue.queues.notify_listen import KILL, NO_JOB, listen

DONE = "pgqueue_check_done"  # the checker's own channel: its last notification after each beat
HEAR_WITHIN = 5.0  # seconds; the answers are in long before, this only bounds a broken server


@dataclass
class _Lab:
    """The scratch lab while it is checked: a connection that beats, one that listens on every channel."""

    beat: psycopg.Connection
    ear: psycopg.Connection
    procs: list[Identity]
    jobs: dict[int, tuple[str, str]] = field(default_factory=dict)  # job id -> (name, version)
    finished: set[int] = field(default_factory=set)  # jobs finished before any beat
    sent: dict[int, str] = field(default_factory=dict)  # job id -> the uuid it was first sent to
    misdirected: int = 0  # answers heard on another process's channel
    answered: int = 0  # answers heard on the beating process's own channel
    flawed: int = 0  # flaws of the jobs handed out: not taken, dated, marked busy or sent as taken
    told: set[int] = field(default_factory=set)  # the kinds of flaw already told
    beats: int = 0

    def job(self, job_id: int) -> tuple | None:
        """job_queue's row of a job: id, name, version, assignee, finished, whether the take is dated."""
        return next((r for r in self.beat.execute(checks()["answer_job_list"]) if r[0] == job_id), None)

    def add(self, jobs: list[tuple[str, str, int, bool]]) -> list[int]:
        """Insert jobs (name, version, seconds old, finished); their ids, in the order given."""
        before = {row[0] for row in self.beat.execute(checks()["answer_job_list"])}
        names, versions, ages, finished = (list(column) for column in zip(*jobs, strict=True))
        params = {"names": names, "versions": versions, "ages": ages, "finished": finished}
        self.beat.execute(checks()["answer_jobs"], params)
        new = [row for row in self.beat.execute(checks()["answer_job_list"]) if row[0] not in before]
        for job_id, name, version, _, done, _ in new:
            if done:
                self.finished.add(job_id)
            else:
                self.jobs[job_id] = (name, version)
        return sorted(row[0] for row in new)  # ids are given in the order of insertion

    def heartbeat(self, who: Identity) -> list[tuple[str, str]]:
        """Beat as `who`; every (channel, payload) heard on the processes' channels until the beat's end."""
        self.beats += 1
        send_heartbeat(self.beat, who)
        self.beat.execute(checks()["answer_done"], {"channel": DONE, "payload": str(self.beats)})
        heard: list[tuple[str, str]] = []
        deadline = time.monotonic() + HEAR_WITHIN
        while time.monotonic() < deadline:
            for n in self.ear.notifies(timeout=deadline - time.monotonic(), stop_after=1):
                if n.channel == DONE and n.payload == str(self.beats):
                    return heard
                if n.channel != DONE:
                    heard.append((n.channel, n.payload))
        raise TimeoutError(f"the checker's own notification did not arrive within {HEAR_WITHIN:g} s")


@checker("your answer_heartbeat", "notify-listen", "job_queue", examples=True, replaces=None)
def heartbeat_answer(
    verdict: Verdict, lab: labs.Scratch, beat: psycopg.Connection, text: str, poc: str
) -> None:
    """Whether the learner's `answer_heartbeat` answers kill, the oldest job for its process, or No job found.

    The trigger `heartbeat_finds_job` keeps using the function, so it cannot be dropped: the
    checker first replaces it with a placeholder, installs the learner's SQL, and makes sure the
    function's source changed. Then real processes beat while a connection LISTENs on every one
    of their channels, and each answer is judged: what was heard, on which channel, and what
    job_queue says afterwards. Names, versions, how many jobs wait and their ages are drawn anew.
    """
    if not _install(beat, text, verdict):
        return
    with lab.connect() as ear:
        scene = _Scene.draw()
        me, twin = Identity.new(scene.name, scene.version), Identity.new(scene.name, scene.version)
        newer = Identity.new(scene.name, scene.newer)
        run = _Lab(beat, ear, [me, twin, newer])
        for who in run.procs:
            listen(ear, who)
        listen_to = queries.load("clients/notify_listen.sql")["listen"]
        ear.execute(sql.SQL(listen_to).format(channel=sql.Identifier(DONE)))
        try:
            _scenario(run, scene, verdict)
            if run.answered and not run.misdirected:
                verdict.held.append("every answer arrived on the beating process's own channel only")
        except psycopg.Error as exc:
            verdict.refuse(f"a heartbeat failed: {said(exc)}")
        except TimeoutError as exc:
            verdict.refuse(str(exc))


@dataclass(frozen=True)
class _Scene:
    """What one check draws: the process's name and versions, another name, and the waiting jobs' ages."""

    name: str
    version: str
    newer: str
    other: str
    ages: list[int]  # seconds old, of the jobs waiting for name version, in the order of their ids

    @classmethod
    def draw(cls) -> _Scene:
        # minor 0 would make 1.0.0, the version of the example job (first_process 1.0.0)
        tag, minor = secrets.token_hex(2), 1 + secrets.randbelow(9)
        ranks = list(range(3 + secrets.randbelow(3)))
        # the oldest is neither the first nor the last id: no order of ids picks it
        while ranks[0] == 0 or ranks[-1] == 0:
            secrets.SystemRandom().shuffle(ranks)
        return cls(
            f"resize_{tag}", f"1.{minor}.0", f"2.{minor}.0", f"report_{tag}", [3600 - 10 * r for r in ranks]
        )


def _install(conn: psycopg.Connection, text: str, verdict: Verdict) -> bool:
    """Replace answer_heartbeat by a placeholder, then by the learner's SQL; True if theirs is in place."""
    conn.execute(checks()["answer_placeholder"])
    placeholder = _source(conn)
    if not install(conn, text, verdict):
        if "already exists" in verdict.wrong[-1]:
            verdict.wrong[-1] += (
                ": the trigger heartbeat_finds_job uses answer_heartbeat, so it cannot be dropped; "
                "write CREATE OR REPLACE FUNCTION answer_heartbeat()"
            )
        return False
    return verdict.expect(
        _source(conn) != placeholder,
        "your SQL replaces answer_heartbeat, the function the trigger heartbeat_finds_job runs",
        "your SQL ran but did not replace answer_heartbeat (the function the trigger heartbeat_finds_job "
        "runs): write CREATE OR REPLACE FUNCTION answer_heartbeat() RETURNS trigger ...",
    )


def _source(conn: psycopg.Connection) -> str | None:
    row = conn.execute(checks()["routine_source"], {"name": "answer_heartbeat"}).fetchone()
    return row[0] if row else None


def _scenario(run: _Lab, scene: _Scene, verdict: Verdict) -> None:
    me, twin, newer = run.procs
    mine = run.add([(scene.name, scene.version, age, False) for age in scene.ages])
    # an older job of its process that is finished (closed by hand, its worker gone), and
    # jobs of the other version and of another name, all older than those it may take
    old = 3600 + 600
    others = run.add(
        [
            (scene.name, scene.version, old, True),
            (scene.name, scene.newer, old - 10, False),
            (scene.other, scene.version, old - 20, False),
        ]
    )
    by_age = [j for _, j in sorted(zip(scene.ages, mine, strict=True), reverse=True)]
    # 1. the jobs waiting for name version go, oldest first, to its two processes in turn
    for turn, job_id in enumerate(by_age):
        who = me if turn % 2 == 0 else twin
        which = "the oldest job waiting for it" if turn == 0 else "the oldest job still waiting"
        if not _job_answer(run, verdict, who, job_id, which):
            return
    verdict.held.append(
        f"the {len(mine)} jobs waiting for {scene.name} {scene.version} (dated out of the order of their "
        "ids) went out oldest first, each once, to its two processes in turn"
    )
    # 2. nothing left for it, while a finished job of its own and jobs of others wait
    others_wait = (
        f"only jobs of {scene.name} {scene.newer} and {scene.other} {scene.version} waited, and job "
        f"{others[0]} of its own was finished"
    )
    heard = _own(run, verdict, me, others_wait)
    if heard is not None and _row(heard) is not None:
        verdict.wrong.append(_wrong_job(run, me, _row(heard)["job_id"], None))
    elif heard is not None:
        verdict.expect(
            heard == NO_JOB,
            "'No job found' when only other processes' jobs (and a finished one) wait",
            f"process {me.uuid} heard {_said(run, heard)} while {others_wait}: answer 'No job found'",
        )
    # 3. the other version's process gets its job
    if _job_answer(run, verdict, newer, others[1], "the job waiting for its version") and not run.flawed:
        verdict.held.append(
            f"{scene.name} {scene.newer} got job {others[1]}, the one waiting for its version; every job "
            "handed out was sent as taken, and job_queue marks it taken (and dated) by that process, busy"
        )
    # 4. the kill switch: 'kill', and the waiting job stays for the others
    run.beat.execute(queries.load("clients/heartbeats.sql")["set_kill_switch"], {"uuid": me.uuid, "on": True})
    (waiting,) = run.add([(scene.name, scene.version, 0, False)])
    heard = _own(run, verdict, me, f"its kill switch was set and job {waiting} waited")
    if heard is not None:
        verdict.expect(
            heard == KILL,
            "'kill' when the process's kill switch is set",
            f"process {me.uuid} has its kill switch set and heard {_said(run, heard)}: answer 'kill' "
            "first, whatever waits",
        )
    taken = run.job(waiting)[3]
    verdict.expect(
        taken is None,
        "a killed process takes no job: it stays waiting for the others",
        f"job {waiting} was taken by process {taken} after its kill switch was set: the worker exits "
        "on 'kill', so that job would stay taken forever",
    )


def _own(run: _Lab, verdict: Verdict, who: Identity, while_: str) -> str | None:
    """Beat as `who`; the one answer on its own channel, or None after recording what went wrong."""
    heard = run.heartbeat(who)
    elsewhere = [(c, p) for c, p in heard if c != who.channel]
    run.misdirected += len(elsewhere)
    for channel, payload in elsewhere:
        owner = next((p for p in run.procs if p.channel == channel), None)
        verdict.wrong.append(
            f"the answer to the beat of process {who.uuid} ({_said(run, payload)}) arrived on {channel}, "
            f"the channel of process {owner.uuid if owner else '?'}: answer only on channel_ || the "
            "beating process's uuid (NEW.process_uuid)"
        )
    own = [p for c, p in heard if c == who.channel]
    run.answered += len(own)
    if not own and elsewhere:
        return None
    if not own:
        verdict.wrong.append(
            f"process {who.uuid} heard nothing on {who.channel} after its beat, while {while_}: "
            "every beat must be answered, with pg_notify on channel_<uuid>"
        )
        return None
    if len(own) > 1:
        shown = ", ".join(_said(run, p) for p in own)
        verdict.wrong.append(
            f"process {who.uuid} heard {len(own)} answers to one beat ({shown}): send exactly one"
        )
        return None
    return own[0]


def _job_answer(run: _Lab, verdict: Verdict, who: Identity, job_id: int, which: str) -> bool:
    """Beat as `who` and expect job `job_id` as a JSON row; False when the scenario cannot go on."""
    heard = _own(run, verdict, who, f"job {job_id} waited for it")
    if heard is None:
        return False
    if heard in (KILL, NO_JOB):
        verdict.wrong.append(f"process {who.uuid} heard '{heard}' while job {job_id} waited for it")
        return False
    row = _row(heard)
    if row is None:
        verdict.wrong.append(
            f"process {who.uuid} heard {heard[:80]!r}, which is not a job row as JSON "
            "(send row_to_json of the job row)"
        )
        return False
    got = row["job_id"]
    if got in run.sent:
        verdict.wrong.append(
            f"job {got} was handed out twice: to process {run.sent[got]}, then to process {who.uuid}"
        )
        return False
    run.sent[got] = who.uuid
    if got != job_id:
        verdict.wrong.append(_wrong_job(run, who, got, job_id))
        return False
    sent_to = row.get("job_assigned_process_uuid")
    _, _, _, assignee, _, dated = run.job(job_id)
    busy = (run.beat.execute(checks()["answer_busy"], {"uuid": who.uuid}).fetchone() or (None,))[0]
    missing = [column for (column,) in run.beat.execute(checks()["answer_job_columns"]) if column not in row]
    flaws = [
        (
            bool(missing),
            f"process {who.uuid} was sent job {job_id} as JSON without {_keys(missing)}: a worker reads "
            "the whole job row (the step it runs, its request, who holds it), so send row_to_json of the "
            "row take_job hands back",
        ),
        (
            "job_assigned_process_uuid" in row and sent_to != who.uuid,
            f"process {who.uuid} was sent job {job_id}, but the row says job_assigned_process_uuid "
            f"{sent_to!r}: send the row take_job hands back (it fills it in), after taking the job",
        ),
        (
            assignee != who.uuid,
            f"job {job_id} was sent to process {who.uuid} but job_queue says it is assigned to "
            f"{assignee or 'nobody'}: take it (take_job) before sending it",
        ),
        (
            assignee == who.uuid and not dated,
            f"job {job_id} is marked taken by {who.uuid} but its job_assign_timestamp is NULL: "
            "take_job dates the take, and an UPDATE of your own must too",
        ),
        (
            assignee == who.uuid and busy is not True,
            f"job {job_id} is taken by {who.uuid}, but process_heartbeats says that process is not busy "
            "(process_busy false): take_job marks it busy, and an UPDATE of your own must too",
        ),
    ]
    for kind, (bad, wrong) in enumerate(flaws):
        # one sentence of each kind: the same flaw repeats at every job handed out
        if bad and kind not in run.told:
            run.told.add(kind)
            verdict.wrong.append(wrong)
        run.flawed += bad
    return True  # a row without the assignee still tells the rest of the scenario what it needs


def _keys(columns: list[str]) -> str:
    """A few column names in plain words: 'a', 'a and b', or 'a, b, c and 4 more'."""
    if len(columns) > 3:
        return ", ".join(columns[:3]) + f" and {len(columns) - 3} more"
    return " and ".join(filter(None, [", ".join(columns[:-1]), *columns[-1:]]))


def _wrong_job(run: _Lab, who: Identity, got: int, expected: int | None) -> str:
    """Why job `got` was the wrong answer for `who`, who should have had job `expected`."""
    if got in run.finished:
        return (
            f"process {who.uuid} was handed job {got}, which is finished: only a job not finished "
            "(NOT job_finished) waits"
        )
    name, version = run.jobs.get(got, ("?", "?"))
    if (name, version) != (who.name, who.version):
        what = "the process name" if name != who.name else "the version"
        return (
            f"process {who.uuid} ({who.name} {who.version}) was handed job {got}, a job for "
            f"{name} {version}: match {what} too"
        )
    if expected is None:
        return f"process {who.uuid} was handed job {got} while nothing waited for it: answer 'No job found'"
    # `expected` is the oldest job still waiting for this process, so `got` is a younger one
    return (
        f"process {who.uuid} was handed job {got} while job {expected}, older, waited: "
        "hand out the oldest first (ORDER BY job_create_timestamp)"
    )


def _row(payload: str) -> dict | None:
    try:
        row = json.loads(payload)
    except ValueError:
        return None
    return row if isinstance(row, dict) and isinstance(row.get("job_id"), int) else None


def _said(run: _Lab, payload: str) -> str:
    """A heard payload in a few words: 'kill', 'No job found', or 'job 4'."""
    row = _row(payload)
    return f"job {row['job_id']}" if row else repr(payload[:60])
