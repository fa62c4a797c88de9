"""Lesson 09's checker: the learner's query for the jobs held by dead workers, on a scratch lab."""

from __future__ import annotations

import dataclasses
import math
import secrets
from collections.abc import Iterable

import psycopg
from psycopg.rows import dict_row

from pgqueue import queries
from pgqueue.check.core import Refused, Verdict, checker, query_refused
from pgqueue.queues import labs


def _q() -> queries.Queries:
    return queries.load("clients/check_dead_holders.sql")


def _ids(jobs: Iterable[int]) -> str:
    return ", ".join(map(str, sorted(set(jobs))))


@dataclasses.dataclass(frozen=True)
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


@checker(
    "your query for jobs held by dead workers", "single-call", "find_job", examples=True, sends=("seconds",)
)
def dead_holders(verdict: Verdict, lab: labs.Scratch, conn: psycopg.Connection, text: str, poc: str) -> None:
    """Try the learner's query, which lists the jobs held by dead workers (silent for longer than
    %(seconds)s, stopped, or never beating), on a scratch single-call lab whose answer is known.

    The scene's job ids, the order of its jobs, the workers' silences (one of them minutes long) and
    the jobs' ages are drawn anew each time; the query runs at two thresholds, a few seconds and half
    a minute or so, each in a transaction rolled back afterwards.
    """
    rng = secrets.SystemRandom()
    low, high = rng.randint(3, 8), rng.randint(25, 45)  # whole seconds, as a learner would pass them
    workers, scene = _dead_holder_scene(low, high)
    uuids = {name: secrets.token_hex(6) for name in workers}
    listed: dict[int, list[int]] = {}
    conn.execute(_q()["exercise_first_id"], {"first": rng.randint(100, 9000)})
    conn.execute(_q()["exercise_requests"], {"count": len(scene)})
    ids = [row[0] for row in conn.execute(_q()["exercise_jobs"])]
    for name, who in workers.items():
        if who.beat is not None:
            conn.execute(_q()["exercise_beat"], {"uuid": uuids[name], **dataclasses.asdict(who)})
    for job_id, (holder, finished, ago) in zip(ids, scene, strict=True):
        uuid = uuids.get(holder, holder)  # '' and None stay as they are
        params = {"job_id": job_id, "uuid": uuid, "ago": ago, "finished": finished or None}
        conn.execute(_q()["exercise_hold"], params)
    for seconds in (low, high):
        try:
            with conn.transaction(force_rollback=True), conn.cursor(row_factory=dict_row) as cur:
                rows = cur.execute(text, {"seconds": seconds}).fetchall()
        except psycopg.Error as exc:
            raise Refused(query_refused(text, exc)) from None
        if rows and "job_id" not in rows[0]:
            raise Refused(f"it should return a column job_id; it returned {list(rows[0])}")
        # ids first, in order; anything else a query returned as job_id (a NULL) after them
        found = (row["job_id"] for row in rows)
        listed[seconds] = sorted(
            found, key=lambda v: (not isinstance(v, int), v if isinstance(v, int) else 0)
        )
    _judge_dead_holders(verdict, dict(zip(ids, scene, strict=True)), workers, listed)


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
