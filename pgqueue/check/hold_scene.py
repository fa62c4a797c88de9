"""The hold judge's scene: its workers' calls, the state it reads, and how a refusal is judged."""

from __future__ import annotations

import json
import random
import secrets

import psycopg
from psycopg.rows import dict_row

from pgqueue import queries
from pgqueue.check.callers import Said, client, finish, hand_over, wrong
from pgqueue.check.core import Refused, Verdict
from pgqueue.queues import labs
from pgqueue.queues.heartbeats import Identity

ROUTINE = "hold_jobs"
POC = "hardened"
FIRST, SECOND, THIRD = ("first_process", "1.9.2"), ("second_process", "2.2.0"), ("third_process", "5.3.0")
PLAIN, NEXT_ORDER = 2, 4  # pipeline 2 chains the three steps above; pipeline 4 is order 2
RESCUE_AFTER = 60.0  # seconds: long enough that no worker of the checker goes silent by accident
SILENT_FOR = 600.0  # the silent worker's last beat is moved this far back
WAIT = 10.0  # seconds to wait for a state a forced schedule expects
LOCK_TIMEOUT_MS = "10000"  # a finisher stuck behind a lock fails after this, instead of hanging
NOT_HELD, NO_JOB, BAD_INPUT, DEADLOCK = "55000", "P0002", "22023", "40P01"
# what each SQLSTATE the lesson asks for means, for the learner whose answer raised another one
MEANS = {
    NOT_HELD: "object_not_in_prerequisite_state: the job is not the caller's to hand over",
    NO_JOB: "no_data_found: a job nobody made",
    BAD_INPUT: "invalid_parameter_value: arguments that cannot go together",
}


def hold_queries() -> queries.Queries:
    return queries.load("clients/check_hold_jobs.sql")


def lesson_queries() -> queries.Queries:
    return labs.step(POC, "find_job").lesson


class Scene:
    """The scratch lab, and the calls the checker makes in it as workers and clients do."""

    def __init__(self, lab: labs.Scratch, conn: psycopg.Connection) -> None:
        self.lab, self.conn = lab, conn
        # each new pipe job more urgent than the last: what earlier checks left waiting (a
        # broken hold_jobs may make jobs twice) never comes before the job a check needs
        self.rng = random.Random(secrets.randbits(64))
        self.priority = self.rng.randint(60, 90)  # below the examples' 100: theirs never come first

    def request(self, *pipe_ids: int) -> list[int]:
        """A new request with a pipe job of each pipeline, in order; their ids."""
        calls = client(self.conn)
        request_id = calls.next_request_id()
        made = []
        for pipe_id in pipe_ids:
            self.priority -= 1
            made.append(calls.submit(pipe_id, request_id, self.priority))
        return made

    def claim(self, step: tuple[str, str], pipe_jobs: list[int], batch: int = 1) -> tuple[str, list[int]]:
        """A new worker of `step` calls find_job once: its uuid and the jobs it was handed.

        They must be `batch` jobs of `pipe_jobs`, else the checks cannot go on.
        """
        who = Identity.new(*step)
        text = client(self.conn).ask(who, batch=batch)
        jobs = json.loads(text) if text.startswith("[") else []
        if len(jobs) != batch or {job["pipe_job_id"] for job in jobs} != set(pipe_jobs):
            raise Refused(
                f"a worker of {step[0]} asked find_job for {batch} job(s) of pipe job(s) {pipe_jobs} and "
                f"was answered {short(text)}: the hand-over before it did not make the job(s) it should"
            )
        return who.uuid, sorted(job["job_id"] for job in jobs)

    def create(self, who: str, ids: list[int], jobs: int = 1) -> Said:
        """create_jobs as worker `who` calls it: `jobs` new jobs for the next step."""
        return hand_over(self.conn, who, ids, jobs)

    def handed(self, who: str, ids: list[int], step: tuple[str, str], jobs: int = 1) -> Said:
        """create_jobs of the holder of `ids`, which the later checks need accepted."""
        said = self.create(who, ids, jobs)
        if not said.ok:
            raise Refused(f"worker {who} held job {ids[0]} ({step[0]}), yet its create_jobs was {said}")
        return said

    def finish(self, who: str, ids: list[int], pipe_job: int) -> Said:
        """finish_pipe as worker `who` calls it."""
        return finish(self.conn, who, ids, pipe_job)

    def tables(self, conn: psycopg.Connection | None = None) -> dict[str, tuple[int, str]]:
        """Every table's row count and checksum."""
        rows = (conn or self.conn).execute(lesson_queries()["every_table"])
        return {name: (count, checksum) for name, count, checksum in rows}

    def job(self, job_id: int) -> dict:
        with self.conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(hold_queries()["job"], {"job_id": job_id}).fetchone()

    def step_jobs(self, pipe_job: int, step: tuple[str, str]) -> list[int]:
        """The jobs of `step` that pipe job `pipe_job` has: what the hand-overs to it made."""
        params = {"pipe_job_id": pipe_job, "name": step[0]}
        return self.conn.execute(hold_queries()["jobs_of_step"], params).fetchone()[0]

    def entry_jobs(self, pipe_job: int) -> int:
        return self.conn.execute(lesson_queries()["jobs_of"], {"pipe_job_id": pipe_job}).fetchone()[0]

    def finished(self, pipe_job: int) -> bool:
        return self.conn.execute(hold_queries()["pipe_job_finished"], {"pipe_job_id": pipe_job}).fetchone()[0]

    def outcomes(self, job_id: int) -> list[str | None]:
        return [row[0] for row in self.conn.execute(lesson_queries()["outcomes"], {"job_id": job_id})]

    def silence(self, uuid: str) -> None:
        """Move worker `uuid`'s last beat SILENT_FOR back: it looks dead."""
        self.conn.execute(lesson_queries()["age_heartbeat"], {"uuid": uuid, "seconds": SILENT_FOR})

    def connect(self) -> psycopg.Connection:
        """A finisher's connection: it gives up on a lock after LOCK_TIMEOUT_MS instead of hanging."""
        conn = self.lab.connect()
        conn.execute(hold_queries()["lock_timeout"], {"ms": LOCK_TIMEOUT_MS})
        return conn

    def blockers(self, pid: int) -> list[int]:
        """The sessions backend `pid` waits for."""
        return self.conn.execute(hold_queries()["blocked_by"], {"pid": pid}).fetchone()[0] or []

    def batch_of_two(self) -> tuple[int, str, int, int]:
        """A pipe job whose first step made two jobs, both handed to one worker of the second step:
        the pipe job, that worker, and its two jobs."""
        (pipe_job,) = self.request(PLAIN)
        worker, jobs = self.claim(FIRST, [pipe_job])
        self.handed(worker, jobs, FIRST, jobs=2)
        holder, (a, b) = self.claim(SECOND, [pipe_job], batch=2)
        return pipe_job, holder, a, b


def short(answer: object) -> str:
    shown = repr(answer)
    return shown if len(shown) < 80 else shown[:77] + "...'"


def changed_tables(before: dict[str, tuple[int, str]], after: dict[str, tuple[int, str]]) -> str:
    """The tables that differ, e.g. 'job_queue (7 rows, was 6)' or 'job_attempts (values in its 5 rows)'."""

    def how(name: str) -> str:
        rows, was = after[name][0], before.get(name, (0, ""))[0]
        return f"values in its {rows} rows" if rows == was else f"{rows} rows, was {was}"

    return ", ".join(f"{name} ({how(name)})" for name in after if before.get(name) != after[name])


def unchanged(
    verdict: Verdict, scene: Scene, before: dict, what: str, held: str, kind: str = "refused"
) -> bool:
    """Expect no table to have changed since `before`, after a `kind` call ('refused' or 'repeated')."""
    changed = changed_tables(before, scene.tables())
    return verdict.expect(not changed, held, f"{what} changed {changed}: a {kind} call must change nothing")


def refusal(verdict: Verdict, said: Said, code: str, what: str, why: str) -> bool:
    """Expect `said`, the answer to the call `what` describes, to be a refusal with SQLSTATE `code`.

    `why` says why the call must be refused: the cause when it was accepted. Refused with another
    SQLSTATE, the code is the cause, and the ✗ line names the one raised and the one asked for.
    """
    if said.code == code:
        return verdict.expect(True, f"{what}: {said}", "")
    if said.ok:
        return wrong(verdict, f"{what}, and it was accepted: {why}; refuse it with SQLSTATE {code}")
    if (said.code or "")[:2] in ("42", "0A", "XX"):  # syntax, a name, a feature: no refusal of the learner's
        return wrong(
            verdict,
            f"{what}, and it was {said}: that is PostgreSQL unable to run your hold_jobs on this "
            f"call, no refusal of yours; once it runs, refuse it with refuse('{code}', ...) ({MEANS[code]})",
        )
    plain = " (P0001 is what RAISE EXCEPTION raises when no ERRCODE is given)" if said.code == "P0001" else ""
    return wrong(
        verdict,
        f"{what}, and it was {said}: the wrong SQLSTATE{plain}; the lesson asks for {code} here "
        f"({MEANS[code]}): refuse it with refuse('{code}', ...)",
    )


def refused_alone(scene: Scene, verdict: Verdict, call, what: str, why: str, held: str, code: str = NOT_HELD):
    """`call()` must be refused with `code` and change no table (✓ line `held`)."""
    before = scene.tables()
    if refusal(verdict, call(), code, what, why):
        unchanged(verdict, scene, before, what, held)
