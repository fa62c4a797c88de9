"""Lesson 12's capstone: a short chaos round on the hardened lab rebuilt with the learner's routines."""

from __future__ import annotations

import functools

from pgqueue import queries
from pgqueue.check.claim_jobs import claim_jobs
from pgqueue.check.core import Verdict, install, written
from pgqueue.check.gate_takes_turns import gate_takes_turns
from pgqueue.check.hold_jobs import hold_jobs
from pgqueue.check.rescue_jobs import rescue_jobs
from pgqueue.errors import PgQueueError
from pgqueue.lab import chaos
from pgqueue.queues import client, labs

# What a learner may put in place of the kit's own in a round on their version.
YOURS = ("claim_jobs", "rescue_jobs", "hold_jobs", "pipe_job_takes_turn")
# Lesson 12's check of each piece, run before the round: their faults show at moments a short
# round meets by chance or not at all (a claim without SKIP LOCKED or without a lock, a gate
# without its lock, two rescues at once, a rescue while a lease is made, a late hand-over), and
# each check's forced schedules meet them every time. A round's "held" is then never said of a
# piece its own check refuses.
RACE_CHECKS = {
    "claim_jobs": ("check.claim_jobs", claim_jobs),
    "rescue_jobs": ("check.rescue_jobs", rescue_jobs),
    "hold_jobs": ("check.hold_jobs", hold_jobs),
    "pipe_job_takes_turn": (
        'check.gate_takes_turns(poc="hardened")',
        functools.partial(gate_takes_turns, poc="hardened"),
    ),
}


def capstone(
    yours: dict[str, str],
    requests: int = 12,
    *,
    seconds: float = 8.0,
    drain: float = 10.0,
    drain_cap: float = 40.0,
    seed: int | None = None,
) -> chaos.Round:
    """A chaos round (`chaos.run` with failing handlers and its forced scenes) on the hardened lab
    rebuilt with `yours` (a routine of `YOURS`: the SQL that creates it) in place of the kit's.

    Each piece of yours first goes through lesson 12's own check of it (`race_checks`), whose
    lines come first; SQL that PostgreSQL refuses ends the round before it starts.
    """
    unknown = sorted(set(yours) - set(YOURS))
    if unknown:
        raise PgQueueError(f"a round on your version replaces {', '.join(YOURS)}; not {', '.join(unknown)}")
    client.fresh_lab(chaos.POC)
    checks = queries.load("clients/check.sql")
    verdict = Verdict("your hardened queue")
    with labs.connect(chaos.POC) as conn:
        if "pipe_job_takes_turn" in yours:
            conn.execute(checks["gate_drop_trigger"])  # the trigger depends on the kit's function
        for routine, text in yours.items():
            if written(text, verdict) is None or not install(conn, text, verdict, replaces=[routine]):
                verdict.wrong[-1] = f"{routine}: {verdict.wrong[-1]}"
                return chaos.Round(requests, verdict=verdict)
        conn.execute(checks["revoke_from_public"])  # as step 08 left every other routine
    before = race_checks(yours)
    found = chaos.run(
        requests,
        seconds=seconds,
        drain=drain,
        drain_cap=drain_cap,
        seed=seed,
        fail=0.1,
        max_attempts=3,
        backoff=0.2,
        scenes=True,
        subject="your hardened queue",
    )
    found.verdict.wrong[:0] = before.wrong
    found.verdict.held[:0] = before.held
    return found


def race_checks(yours: dict[str, str]) -> Verdict:
    """Lesson 12's own check of each piece of `yours` whose fault shows only in a race (`RACE_CHECKS`),
    as one verdict whose lines name the piece and the check."""
    verdict = Verdict("your hardened queue")
    for routine, (name, judge_piece) in RACE_CHECKS.items():
        if routine not in yours:
            continue
        found = judge_piece(yours[routine])
        said = f"{routine}, in lesson 12's {name} before the round"
        verdict.wrong += [f"{said}: {line}" for line in found.wrong]
        if found.holds:
            verdict.held.append(
                f"{routine} held in lesson 12's {name} before the round ({len(found.held)} checks, its "
                "forced schedules among them)"
            )
    return verdict
