"""Lesson 10's checker: the learner's claim, raced by callers released together while one job is held."""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

import psycopg

from pgqueue import queries
from pgqueue.check.core import Refused, Verdict, checker, query_refused, together
from pgqueue.errors import PgQueueError
from pgqueue.queues import labs
from pgqueue.wait import until


def _q() -> queries.Queries:
    return queries.load("clients/check_skip_locked_claim.sql")


def _ids(jobs: Iterable[int]) -> str:
    return ", ".join(map(str, sorted(set(jobs))))


NAME, VERSION = "first_process", "1.9.2"  # whose jobs the callers claim
# the jobs of other processes in the scene: another process, the same name at another version, and
# another name at the same version
PROCESSES = {
    "second_process": ("second_process", "2.2.0"),
    "other_version": (NAME, "2.0.0"),
    "other_name": ("merging_results", VERSION),
}
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
    be taken (held, finished with no holder or '' as it, another process's, first_process at another
    version, another process at 1.9.2). Two pairs of free jobs share a
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
    # a finished job whose holder was cleared, as an operator's hand-back by hand leaves one, and
    # one whose holder is '' (a WHERE whose OR binds looser than its ANDs takes it); jobs of the
    # same name at another version, and of another name at the same version, as an upgrade leaves
    decoys = [("held", best - 1, secrets.token_hex(6)), ("finished", best - 1, None)]
    decoys += [("finished_nobody", best - 1, ""), ("second_process", best - 1, None)]
    decoys += [("other_version", best - 1, None), ("other_name", best - 1, None)]
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
    id_of = {e: ids[n] for n, e in enumerate(by_age)}  # the older the lower its id, but
    for a in (0, callers):  # in each pair of equal priority the newer has the lower id: age is not id
        id_of[a], id_of[a + 1] = id_of[a + 1], id_of[a]
    for e in by_age:
        kind, priority, holder = entries[e]
        name, version = PROCESSES.get(kind, (NAME, VERSION))
        params = {
            "job_id": id_of[e],
            "priority": priority,
            "uuid": holder,
            "finished": kind.startswith("finished") or None,
        }
        # whole seconds apart: no two tie on their age
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
        "finished_nobody": "which has finished, with '' as its holder (AND binds tighter than OR: a test "
        "of NULL or '' wants parentheses)",
        "second_process": "a job of second_process 2.2.0",
        "other_version": f"a job of {NAME} 2.0.0 (another version: compare job_process_version too)",
        "other_name": f"a job of merging_results {VERSION} (another process: compare job_process_name too)",
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


@checker("your claim", "single-call", sends=("name", "version"))
def skip_locked_claim(
    verdict: Verdict,
    lab: labs.Scratch,
    holder: psycopg.Connection,
    text: str,
    poc: str,
    callers: int | None = None,
) -> None:
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
    params = {"name": NAME, "version": VERSION}
    holder.execute(labs.step(poc, "pipelines").example_sql)
    scene = _claim_scene(holder, callers)
    order, others = scene.order, scene.others
    ids = [*order, *others]
    with contextlib.ExitStack() as stack:
        probe = stack.enter_context(lab.connect())
        conns = [stack.enter_context(lab.connect()) for _ in range(callers)]
        for c in conns:
            c.execute(
                queries.load("clients/races.sql")["lock_timeout"], {"ms": str(int(CLAIM_LOCK_TIMEOUT * 1000))}
            )
        with holder.transaction():
            try:
                row = holder.execute(text, params).fetchone()
            except psycopg.Error as exc:
                raise Refused(query_refused(text, exc)) from None
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
                raise Refused(f"your query returned {found}, with {waiting}{kept}")
            pids = [holder.info.backend_pid, *(c.info.backend_pid for c in conns)]
            got, after = _claim_race(conns, text, params, probe, ids, pids)
    _judge_claims(verdict, row[0], got, before, after, scene)


def _claim_race(
    conns: list[psycopg.Connection],
    text: str,
    params: dict,
    probe: psycopg.Connection,
    ids: list[int],
    pids: list[int],
) -> tuple[list[object], _Locks]:
    """The callers released together, each picking inside a transaction it keeps open until `probe`
    has looked at the locks held on every job of the scene; what each caller got, and those locks
    (Refused, if a caller neither picked nor gave up)."""
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
        raise Refused(f"the race could not be judged: {exc}") from None
    finally:
        release.set()
        racer.join(30)
    failed = [r for r in results if isinstance(r, BaseException)]
    if failed:
        said = failed[0].diag.message_primary if isinstance(failed[0], psycopg.Error) else failed[0]
        raise Refused(f"a caller's query failed: {said or failed[0]}")
    return results, locks


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
                "over a locked job and took none in its place: a test of a free job that these do not "
                "pass, or a job picked in a subquery, then skipped by the lock outside it (SKIP LOCKED "
                "belongs on the query that orders and limits the pick)?"
            )
        else:
            cause = f"rows locked meanwhile: jobs {_ids(after.modes) or 'none'}"
        verdict.expect(
            not nothing,
            f"each of the {callers} callers got a job",
            f"{nothing} of {callers} callers got no job, with {len(order)} free jobs and {len(set(picks))} "
            f"picked: {cause}",
        )
    strays = [j for j in dict.fromkeys(picks) if j not in order]
    finished = [j for j in strays if others.get(j, "").startswith("which has finished")]
    if len(finished) > 1:  # with '' as its holder and with NULL alike: no test of job_finished, not AND/OR
        others = {**others, **{j: others[j].split(" (")[0] for j in finished}}
    # traps of three kinds or more let through at once: one test lets everything past, not each its own
    loose = len({others.get(j) for j in strays}) >= 3
    wrong = [
        f"job {j}, "
        + (
            others.get(j, "which is no job of the queue").split(" (")[0]
            if loose
            else others.get(j, "which is no job of the queue")
        )
        for j in strays
    ]
    verdict.expect(
        not wrong,
        "it picks only free jobs of first_process 1.9.2 (NULL or '' as the holder)",
        f"it picked {'; '.join(wrong)}: a claim takes only unassigned, unfinished jobs of its own process"
        + (
            "; traps of several kinds came through together: is an OR without parentheses letting every job "
            "with no holder through, whatever the rest of the WHERE says? (AND binds tighter than OR: put "
            "the two tests of the holder in parentheses)"
            if loose
            else ""
        ),
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
