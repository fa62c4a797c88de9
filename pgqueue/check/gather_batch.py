"""Lesson 06's checker: the learner's `gather_batch`, asked about fan-outs made with create_jobs."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from pgqueue.check.core import Verdict, checker, checks, said
from pgqueue.queues import labs

GATHERER = ("movemonitor", "1.0.0")  # gathers the four classifications of pipeline 5
OTHER_GATHERER = ("merging_results", "1.5.2")  # gathers the four classifications of pipeline 1
CHECKER_UUID = "0000000c0de6"  # the reference find_job beats under this uuid (rolled back)
SIZES = [2, 3, 5, 6, 7]  # fan-out sizes a check draws its order from: the examples fan out to 4
# sizes tried one by one once an answer is refused, 4 among them: it tells a size-bound answer
PROBE_SIZES = [2, 3, 4, 5, 6, 7]


@dataclass
class FanOut:
    """One request fanned out to a parallel set; `handed` are the jobs its finished members made."""

    parallel: list[int]
    handed: list[int]


class Lab:
    """A scenario's hands on the scratch lab: requests, fan-outs and hand-overs by create_jobs.

    Fan-outs take their sizes in turn from `sizes`, drawn for each check, so that no size of the
    scene is a constant an answer could rely on.
    """

    def __init__(self, conn: psycopg.Connection, sizes: list[int], start: int = 0) -> None:
        self.conn = conn
        self.sizes = sizes
        self.made = start  # where in `sizes` this scenario's first fan-out takes its size

    def create_jobs(self, job_ids: list[int], n: int = 1) -> list[int]:
        """Finish `job_ids` and make `n` jobs of the next step (a fan-out when n > 1)."""
        params = {"job_ids": job_ids, "payloads": Jsonb([{} for _ in range(n)])}
        return self.conn.execute(checks()["gather_create_jobs"], params).fetchone()[0]

    def entry(self, pipe_id: int, priority: int = 100) -> int:
        """A new request for pipeline `pipe_id`; its entry job."""
        params = {"pipe_id": pipe_id, "priority": priority}
        pipe_job = self.conn.execute(checks()["gather_request"], params).fetchone()[0]
        return self.conn.execute(checks()["gather_entry_job"], {"pipe_job_id": pipe_job}).fetchone()[0]

    def fan_out(
        self, missing: int = 0, priority: int = 100, pipe_id: int = 5, doubled: bool = False
    ) -> FanOut:
        """A request fanned out to the next size of parallel jobs, all but `missing` of them handed over
        (the first one `doubled`: it makes two jobs of the next step, not one)."""
        size = self.sizes[self.made % len(self.sizes)]
        self.made += 1
        job = self.entry(pipe_id, priority)
        if pipe_id == 5:  # assigner -> wearing_compliance, which fans out
            (job,) = self.create_jobs([job])
        parallel = self.create_jobs([job], size)
        members = parallel[: size - min(missing, size - 1)]
        handed = [
            job
            for n, member in enumerate(members)
            for job in self.create_jobs([member], 1 + (doubled and not n))
        ]
        return FanOut(parallel, handed)

    def take(self, job_ids: list[int]) -> None:
        """Mark jobs as claimed by a gatherer already."""
        self.conn.execute(checks()["gather_take"], {"job_ids": job_ids})

    def loose(self, priority: int) -> int:
        """A waiting job of the gatherer's process with no creator set (a request's own pipe job)."""
        params = {"pipe_id": 5, "priority": priority}
        pipe_job = self.conn.execute(checks()["gather_request"], params).fetchone()[0]
        params = {"pipe_job_id": pipe_job, "priority": priority, "name": GATHERER[0], "version": GATHERER[1]}
        return self.conn.execute(checks()["gather_loose_job"], params).fetchone()[0]

    def priorities(self, job_ids: list[int], priorities: list[int]) -> None:
        """Give the jobs `job_ids` these priorities, one each."""
        self.conn.execute(checks()["gather_priorities"], {"job_ids": job_ids, "priorities": priorities})

    def ages(self, job_ids: list[int], seconds: list[float]) -> None:
        """Date the jobs `job_ids` these many seconds from now, one each."""
        self.conn.execute(checks()["gather_ages"], {"job_ids": job_ids, "seconds": seconds})

    def blank(self, job_ids: list[int]) -> None:
        """Mark jobs as the original marks "no worker" too: an empty uuid, not NULL."""
        self.conn.execute(checks()["gather_blank"], {"job_ids": job_ids})


@dataclass
class Scenario:
    """One situation a gatherer meets, what holds when the learner's answer is right."""

    held: str
    situation: str  # said before what went wrong
    build: Callable[[Lab], object]
    asks: tuple[str, str] = GATHERER


def _scenarios() -> list[Scenario]:
    def earlier_incomplete(lab: Lab) -> None:
        lab.fan_out(missing=1)
        lab.fan_out()

    def better_incomplete(lab: Lab) -> None:
        lab.fan_out(priority=100)
        lab.fan_out(missing=1, priority=1)

    def none_complete(lab: Lab) -> None:
        lab.fan_out(missing=1)
        lab.fan_out(missing=2, priority=1)

    def by_priority(lab: Lab) -> None:
        lab.fan_out(priority=100)
        lab.fan_out(priority=100)
        lab.fan_out(priority=10)

    def oldest_first(lab: Lab) -> None:
        lab.fan_out(priority=50)
        lab.fan_out(priority=50)

    def best_member(lab: Lab) -> None:
        # the first set's best job is more urgent than any of the second's, its others less so
        mixed = lab.fan_out(priority=50).handed
        lab.priorities(mixed, [1] + [50] * (len(mixed) - 1))
        lab.fan_out(priority=20)

    def interleaved(lab: Lab) -> None:
        # made first, the second set has the lower ids; the first holds the oldest job, and the newest
        later = lab.fan_out(priority=50).handed
        first = lab.fan_out(priority=50).handed
        lab.ages(later, [-300.0 + n for n in range(len(later))])
        lab.ages(first, [-600.0] + [600.0] * (len(first) - 1))

    def loose(lab: Lab) -> None:
        lab.fan_out(priority=50)
        lab.loose(priority=1)  # more urgent than the set, and in no set at all

    def taken(lab: Lab) -> None:
        lab.take(lab.fan_out().handed)
        lab.fan_out()

    def blank(lab: Lab) -> None:
        lab.fan_out(priority=100)
        lab.blank(lab.fan_out(priority=1).handed)

    def running(lab: Lab) -> None:
        lab.fan_out(priority=100)
        lab.take(lab.fan_out(missing=1, priority=1).parallel[-1:])  # a worker runs its last member

    def doubled(lab: Lab) -> None:
        lab.fan_out(priority=100)
        lab.fan_out(missing=1, priority=1, doubled=True)  # as many jobs wait as the set has members

    def entries(lab: Lab) -> None:
        lab.fan_out()
        lab.entry(5)
        lab.entry(5, priority=1)

    def both_gatherers(lab: Lab) -> None:
        lab.fan_out(pipe_id=1, priority=1)
        lab.fan_out(pipe_id=5)

    return [
        Scenario(
            "one complete set: its jobs are handed out together",
            "with one complete set",
            lambda lab: lab.fan_out(),
        ),
        Scenario(
            "an incomplete set created earlier does not hide a complete one",
            "with an incomplete set created before a complete one",
            earlier_incomplete,
        ),
        Scenario(
            "an incomplete set with a better priority does not hide a complete one",
            "with an incomplete set of priority 1 and a complete one of priority 100",
            better_incomplete,
        ),
        Scenario(
            "no complete set: NULL",
            "with two incomplete sets and no complete one",
            none_complete,
        ),
        Scenario(
            "of complete sets, the one with the best priority comes first",
            "with complete sets of priority 100, 100 and 10",
            by_priority,
        ),
        Scenario(
            "of complete sets of one priority, the oldest comes first",
            "with two complete sets of the same priority",
            oldest_first,
        ),
        Scenario(
            "a set's priority is its best job's: a set with one job of priority 1 comes before one of 20",
            "with a complete set whose jobs have priority 50 but one of 1, and a complete set of priority 20",
            best_member,
        ),
        Scenario(
            "a set's age is its oldest job's, not its newest's nor its lowest id's",
            "with two complete sets of one priority whose hand-overs interleaved: the one made second "
            "holds the oldest job (10 minutes old) and the newest, the other's jobs are all 5 minutes old",
            interleaved,
        ),
        Scenario(
            "a job of the gatherer's process that no fan-out made (no creator set) is never gathered, and "
            "hides no set",
            f"with a complete set of priority 50 and a more urgent waiting job of {GATHERER[0]} that no "
            "fan-out made (job_creater_set_elements NULL)",
            loose,
        ),
        Scenario(
            "a set a gatherer took already is not handed out again",
            "with one complete set taken already and another waiting",
            taken,
        ),
        Scenario(
            "a set whose jobs have '' (empty) as their worker waits, as one with NULL does",
            "with a complete set of priority 1 whose jobs' job_assigned_process_uuid is '' (no worker, as "
            "NULL is) and another of priority 100",
            blank,
        ),
        Scenario(
            "a set with a member still running (taken by a worker, not finished) waits",
            "with a set of priority 1 whose last member a worker still runs (taken, not finished) and a "
            "complete set of priority 100",
            running,
        ),
        Scenario(
            "a set with a member not finished waits, though as many jobs wait as the set has members (one "
            "member made two)",
            "with a set of priority 1 one of whose members is not finished, while another made two jobs (as "
            "many wait as the set has members), and a complete set of priority 100",
            doubled,
        ),
        Scenario(
            "entry jobs are never gathered (they come from no parallel set)",
            "asked for the assigner, whose entry jobs wait",
            entries,
            ("assigner", "1.0.0"),
        ),
        Scenario(
            "a gatherer receives only its own process's sets",
            f"asked for {OTHER_GATHERER[0]} while its set and {GATHERER[0]}'s wait",
            both_gatherers,
            OTHER_GATHERER,
        ),
        Scenario(
            "another version of the process receives nothing",
            f"asked for {GATHERER[0]} 2.0.0 while {GATHERER[0]} {GATHERER[1]}'s set waits",
            lambda lab: lab.fan_out(),
            (GATHERER[0], "2.0.0"),
        ),
    ]


def fan_out_sizes() -> list[int]:
    """Fan-out sizes for one check, in a random order: never 4 (every example pipeline's), all different."""
    return random.SystemRandom().sample(SIZES, len(SIZES))


@checker("your gather_batch", "single-call", "gather", examples=True, replaces=["gather_batch"])
def gather_batch(
    verdict: Verdict,
    lab: labs.Scratch,
    conn: psycopg.Connection,
    text: str,
    poc: str,
    sizes: list[int] | None = None,
) -> None:
    """Whether the learner's `gather_batch` hands a gatherer the batch find_job would, in twelve situations.

    Each situation is built with create_jobs on a scratch lab (up to the gather step, with the
    example pipelines) inside a transaction that is rolled back afterwards; the learner's answer
    is compared with the jobs find_job itself hands out in multi mode. The fan-outs take their
    sizes in turn from `sizes` (by default drawn at random, never 4), said in the verdict.
    Each scenario starts at another of them, so every size is built.
    """
    sizes = _sizes_checked(sizes) or fan_out_sizes()
    for start, scenario in enumerate(_scenarios()):  # each scenario starts at another size
        if not _try(conn, scenario, verdict, Lab(conn, sizes, start)):
            break
    sized = "" if verdict.holds else _by_size(conn)
    if sized:
        verdict.refuse(sized)
    if verdict.holds:
        verdict.held.append(f"the fan-outs had {_listed(sizes)} jobs (sizes drawn for this check)")


def _listed(sizes: list[int]) -> str:
    shown = [str(n) for n in sorted(set(sizes))]
    return shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} and {shown[-1]}"


def _sizes_checked(sizes: list[int] | None) -> list[int] | None:
    """`sizes` as given, after a clear error if one is not a fan-out of at least two jobs."""
    if sizes is not None and not all(isinstance(n, int) and n >= 2 for n in sizes):
        raise ValueError(f"sizes: fan-out sizes are whole numbers of at least 2 jobs, got {sizes!r}")
    return sizes


def _try(conn: psycopg.Connection, scenario: Scenario, verdict: Verdict, lab: Lab) -> bool:
    """Build one situation, ask both, judge; False when the learner's function failed to run."""
    name, version = scenario.asks
    params = {"name": name, "version": version}
    with conn.transaction(force_rollback=True):
        scenario.build(lab)
        try:
            with conn.transaction(force_rollback=True):
                mine = conn.execute(checks()["gather_call"], params).fetchone()[0]
        except psycopg.Error as exc:
            verdict.refuse(f"{scenario.situation}, your gather_batch failed: {said(exc)}")
            return False
        reference = _reference(conn, scenario.asks)
        if mine is not None and not (isinstance(mine, list) and all(isinstance(i, int) for i in mine)):
            verdict.refuse(f"gather_batch must return integer[] (or NULL); yours returned {mine!r}")
            return False
        if mine == []:
            verdict.refuse(
                f"{scenario.situation}, your gather_batch returned {{}} (an empty array): find_job tests the "
                "batch with IS NULL, so an empty one is claimed and hands out nothing; return NULL when no "
                "set is complete (array_agg of no rows is NULL already)"
            )
            return False
        got = sorted(mine) if mine else None
        # said only when wrong: saying it may probe the answer further
        wrong = "" if got == reference else _what_is_wrong(conn, got, reference, scenario.asks)
        verdict.expect(got == reference, scenario.held, f"{scenario.situation}: {wrong}")
    return True


def _shown(ids: list[int] | None) -> str:
    return "NULL" if ids is None else "{" + ",".join(map(str, ids)) + "}"


def _what_is_wrong(
    conn: psycopg.Connection, got: list[int] | None, reference: list[int] | None, asks: tuple[str, str]
) -> str:
    """The learner's answer, against find_job's, in plain words naming the jobs."""
    if got is None:
        said = f"set {_shown(reference)} was complete but you answered NULL"
        return said + _reads_own_set(conn, reference, asks)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = {r["job_id"]: r for r in cur.execute(checks()["gather_jobs"], {"job_ids": got})}
    for job_id in got:
        row = rows.get(job_id)
        if row is None:
            return f"you handed out job {job_id}, which does not exist"
        if (row["job_process_name"], row["job_process_version"]) != asks:
            return (
                f"you handed out job {job_id}, which waits for {row['job_process_name']} "
                f"{row['job_process_version']}, not for {asks[0]} {asks[1]}"
            )
        if row["job_creater_set_elements"] is None:
            return f"you handed out job {job_id}, an entry job: it comes from no parallel set"
        if row["taken"] or row["job_finished"] is not None:
            return f"you handed out job {job_id}, which a gatherer has taken already"
    sets = {tuple(rows[j]["job_creater_set_elements"]) for j in got}
    if len(sets) > 1:
        return f"you handed out {_shown(got)}, which mixes the jobs of {len(sets)} parallel sets"
    (parallel,) = sets
    with conn.cursor(row_factory=dict_row) as cur:
        members = list(cur.execute(checks()["gather_jobs"], {"job_ids": list(parallel)}))
    running = [m["job_id"] for m in members if m["job_finished"] is not True]
    if running:
        return (
            f"you handed out set {_shown(got)} while job {running[0]} of its parallel set "
            f"{_shown(list(parallel))} had not finished" + _takes_false_for_running(conn, got, running, asks)
        )
    if reference is None:
        return f"you handed out set {_shown(got)}; find_job hands out nothing here"
    if set(got) < set(reference):
        return f"you handed out {_shown(got)}, only part of the waiting set {_shown(reference)}"
    return f"you handed out set {_shown(got)}, but set {_shown(reference)} comes first (priority, then age)"


def _reference(conn: psycopg.Connection, asks: tuple[str, str]) -> list[int] | None:
    """The jobs find_job itself hands a gatherer of `asks` here (rolled back), sorted; None for none."""
    with conn.transaction(force_rollback=True):
        params = {"name": asks[0], "version": asks[1], "uuid": CHECKER_UUID}
        answer = conn.execute(checks()["gather_reference"], params).fetchone()[0]
    return sorted(job["job_id"] for job in json.loads(answer)) if answer.startswith("[") else None


def _mine(conn: psycopg.Connection, asks: tuple[str, str]) -> list[int] | None:
    """The learner's answer once more (rolled back), sorted; None for NULL or an error."""
    try:
        with conn.transaction(force_rollback=True):
            got = conn.execute(checks()["gather_call"], {"name": asks[0], "version": asks[1]}).fetchone()[0]
    except psycopg.Error:
        return None
    return sorted(got) if isinstance(got, list) and got else None


def _takes_false_for_running(
    conn: psycopg.Connection, got: list[int], running: list[int], asks: tuple[str, str]
) -> str:
    """Why an incomplete set went out, if marking its running members false (rolled back) held it back."""
    with conn.transaction(force_rollback=True):
        conn.execute(checks()["gather_finished_false"], {"job_ids": running})
        again = _mine(conn, asks)
    if again == got:
        return ""
    return (
        f": job {running[0]}'s job_finished is NULL, as every job's is until it finishes, and once the "
        "checker set it to false your gather_batch held the set back, so it takes only false for "
        "'not finished'; test job_finished IS NOT TRUE (or IS NULL)"
    )


def _reads_own_set(conn: psycopg.Connection, reference: list[int], asks: tuple[str, str]) -> str:
    """Why a complete set was missed, if giving its jobs the parallel set as their own (rolled back) says."""
    with conn.cursor(row_factory=dict_row) as cur:
        sets = {
            tuple(r["job_creater_set_elements"] or ())
            for r in cur.execute(checks()["gather_jobs"], {"job_ids": reference})
        }
    if len(sets) != 1:
        return ""
    (parallel,) = sets
    with conn.transaction(force_rollback=True):
        conn.execute(checks()["gather_own_set_as_creators"], {"job_ids": reference})
        again = _mine(conn, asks)
    if again != reference:
        return ""
    return (
        ": you found it complete only once the checker set its jobs' job_set_elements to "
        f"{_shown(list(parallel))}, so you look at job_set_elements, each waiting job's own sibling set "
        "(the jobs made with it: here "
        f"itself alone, not finished since it waits); the parallel set {_shown(list(parallel))} whose "
        "jobs must all have finished is job_creater_set_elements, the sibling set of the jobs that "
        "created them"
    )


def _by_size(conn: psycopg.Connection) -> str:
    """If the answer is right for a complete set alone of some sizes, not others: the line that says so."""
    right: list[int] = []
    wrong: list[int] = []
    for size in PROBE_SIZES:
        with conn.transaction(force_rollback=True):
            Lab(conn, [size]).fan_out()
            mine, reference = _mine(conn, GATHERER), _reference(conn, GATHERER)
        (right if mine == reference else wrong).append(size)
    if not right or not wrong:
        return ""
    count = f" (a count of {right[0]}?)" if len(right) == 1 else ""
    return (
        f"one complete set alone, of each size from {PROBE_SIZES[0]} to {PROBE_SIZES[-1]} jobs: you "
        f"gathered it right with {_listed(right)} jobs and wrong with {_listed(wrong)}, so your gather_batch "
        f"depends on how many jobs the set has{count}; a set is complete when every job of its "
        "job_creater_set_elements has finished, however many there are"
    )
