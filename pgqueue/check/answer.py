"""Lesson 03's checker: the learner's `answer_heartbeat`, heard beat by beat on real LISTEN connections."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from pgqueue import labs, queries
from pgqueue.check.core import Verdict, install, written
from pgqueue.heartbeats import Identity, send_heartbeat
from pgqueue.notify_listen import KILL, NO_JOB, listen

DONE = "pgqueue_check_done"  # the checker's own channel: its last notification after each beat
HEAR_WITHIN = 5.0  # seconds; the answers are in long before, this only bounds a broken server


def _q() -> queries.Queries:
    return queries.load("clients/check.sql")


@dataclass
class _Lab:
    """The scratch lab while it is checked: a connection that beats, one that listens on every channel."""

    beat: psycopg.Connection
    ear: psycopg.Connection
    procs: list[Identity]
    jobs: dict[int, tuple[str, str]] = field(default_factory=dict)  # job id -> (name, version)
    sent: dict[int, str] = field(default_factory=dict)  # job id -> the uuid it was first sent to
    misdirected: int = 0  # answers heard on another process's channel
    beats: int = 0

    def assignee(self, job_id: int) -> str | None:
        rows = self.beat.execute(_q()["answer_job_list"]).fetchall()
        return next((r[3] for r in rows if r[0] == job_id), None)

    def heartbeat(self, who: Identity) -> list[tuple[str, str]]:
        """Beat as `who`; every (channel, payload) heard on the processes' channels until the beat's end."""
        self.beats += 1
        send_heartbeat(self.beat, who)
        self.beat.execute(_q()["answer_done"], {"channel": DONE, "payload": str(self.beats)})
        heard: list[tuple[str, str]] = []
        deadline = time.monotonic() + HEAR_WITHIN
        while time.monotonic() < deadline:
            for n in self.ear.notifies(timeout=deadline - time.monotonic(), stop_after=1):
                if n.channel == DONE and n.payload == str(self.beats):
                    return heard
                if n.channel != DONE:
                    heard.append((n.channel, n.payload))
        raise TimeoutError(f"the checker's own notification did not arrive within {HEAR_WITHIN:g} s")


def heartbeat_answer(text: str, poc: str = "notify-listen") -> Verdict:
    """Whether the learner's `answer_heartbeat` answers kill, the oldest job for its process, or No job found.

    The trigger `heartbeat_finds_job` keeps using the function, so it cannot be dropped: the
    checker first replaces it with a placeholder, installs the learner's SQL, and makes sure the
    function's source changed. Then real processes beat while a connection LISTENs on every one
    of their channels, and each answer is judged: what was heard, on which channel, and what
    job_queue says afterwards.
    """
    verdict = Verdict("your answer_heartbeat")
    if written(text, verdict) is None:
        return verdict
    with labs.scratch(poc, "job_queue", examples=True) as lab, lab.connect() as beat, lab.connect() as ear:
        if not _install(beat, text, verdict):
            return verdict
        me, twin = Identity.new("first_process", "1.0.0"), Identity.new("first_process", "1.0.0")
        newer = Identity.new("first_process", "2.0.0")
        run = _Lab(beat, ear, [me, twin, newer])
        for who in run.procs:
            listen(ear, who)
        listen_to = queries.load("clients/notify_listen.sql")["listen"]
        ear.execute(sql.SQL(listen_to).format(channel=sql.Identifier(DONE)))
        names = ["first_process", "second_process", "first_process", "third_process"]
        versions = ["2.0.0", "1.5.2", "1.0.0", "1.0.0"]
        beat.execute(_q()["answer_jobs"], {"names": names, "versions": versions})
        run.jobs = {r[0]: (r[1], r[2]) for r in beat.execute(_q()["answer_job_list"])}
        try:
            _scenario(run, verdict)
            if not run.misdirected:
                verdict.held.append("every answer arrived on the beating process's own channel only")
        except psycopg.Error as exc:
            verdict.refuse(f"a heartbeat failed: {exc.diag.message_primary or exc}")
        except TimeoutError as exc:
            verdict.refuse(str(exc))
    return verdict


def _install(conn: psycopg.Connection, text: str, verdict: Verdict) -> bool:
    """Replace answer_heartbeat by a placeholder, then by the learner's SQL; True if theirs is in place."""
    conn.execute(_q()["answer_placeholder"])
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
    row = conn.execute(_q()["routine_source"], {"name": "answer_heartbeat"}).fetchone()
    return row[0] if row else None


def _scenario(run: _Lab, verdict: Verdict) -> None:
    me, twin, newer = run.procs
    # oldest first: answer_job_list sorts by job_create_timestamp, and dicts keep that order
    mine = [j for j, proc in run.jobs.items() if proc == ("first_process", "1.0.0")]
    # 1. two jobs wait for first_process 1.0.0: the first beat gets the older one
    if not _job_answer(run, verdict, me, mine[0], "the oldest job waiting for it"):
        return
    taken = run.assignee(mine[0])
    verdict.expect(
        taken == me.uuid,
        "the job handed out is marked taken by the process it was sent to",
        f"job {mine[0]} was sent to process {me.uuid} but job_queue says it is assigned to "
        f"{taken or 'nobody'}: take it (take_job) before sending it",
    )
    # 2. another process of the same name and version: the next job, never the same one again
    if not _job_answer(run, verdict, twin, mine[1], "the next waiting job (the oldest was taken)"):
        return
    # 3. nothing left for first_process 1.0.0, while jobs of another version or name wait
    others = "only jobs of first_process 2.0.0, second_process 1.5.2 and third_process 1.0.0 waited"
    heard = _own(run, verdict, me, others)
    if heard is not None and _row(heard) is not None:
        verdict.wrong.append(_wrong_job(run, me, _row(heard)["job_id"], None))
    elif heard is not None:
        verdict.expect(
            heard == NO_JOB,
            "'No job found' when only other processes' jobs wait",
            f"process {me.uuid} heard {_said(run, heard)} while {others}: answer 'No job found'",
        )
    # 4. the other version's process gets its job
    other = [j for j, proc in run.jobs.items() if proc == ("first_process", "2.0.0")]
    _job_answer(run, verdict, newer, other[0], "the job waiting for its version")
    # 5. the kill switch: 'kill', and the waiting job stays for the others
    run.beat.execute(queries.load("clients/heartbeats.sql")["set_kill_switch"], {"uuid": me.uuid, "on": True})
    run.beat.execute(_q()["answer_jobs"], {"names": ["first_process"], "versions": ["1.0.0"]})
    waiting = max(r[0] for r in run.beat.execute(_q()["answer_job_list"]))
    run.jobs[waiting] = ("first_process", "1.0.0")
    heard = _own(run, verdict, me, f"its kill switch was set and job {waiting} waited")
    if heard is not None:
        verdict.expect(
            heard == KILL,
            "'kill' when the process's kill switch is set",
            f"process {me.uuid} has its kill switch set and heard {_said(run, heard)}: answer 'kill' "
            "first, whatever waits",
        )
    taken = run.assignee(waiting)
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
    verdict.expect(
        "job_payload" in row and row.get("job_assigned_process_uuid") == who.uuid,
        f"process {who.uuid[:4]}… ({who.name} {who.version}) got {which}, job {job_id}, "
        "as the row take_job hands back",
        f"process {who.uuid} was sent job {job_id}, but the row says job_assigned_process_uuid "
        f"{row.get('job_assigned_process_uuid')!r}: send the row take_job hands back (it fills it in)",
    )
    return True  # a row without the assignee still tells the rest of the scenario what it needs


def _wrong_job(run: _Lab, who: Identity, got: int, expected: int | None) -> str:
    """Why job `got` was the wrong answer for `who`, who should have had job `expected`."""
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
