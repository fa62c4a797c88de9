"""Why jobs of a chaos round ran past max_attempts: a ✗ line for each piece that let them run on."""

from __future__ import annotations

from collections import defaultdict


def past_max_attempts(
    over: list[int], tries: dict[int, list[dict]], firsts: dict[int, dict], max_attempts: int
) -> list[str]:
    """The ✗ lines for jobs that began more than `max_attempts` attempts, by what let each one run
    on: a rescue that dead-letters late, a claim that takes a dead-lettered job, a rescue that
    never dead-letters (none did in the round), or another call that ended its last allowed
    attempt without dead-lettering it (`firsts`: each dead-lettered job's first dead-letter)."""
    late: list[tuple[int, int]] = []  # (job, its attempts by its dead-letter, or in all)
    again: list[tuple[int, int]] = []  # (job, attempts begun after its dead-letter)
    kept_on: dict[str, list[tuple[int, int]]] = defaultdict(list)  # by how its last allowed one ended
    for job in over:
        f = firsts.get(job)
        if f is not None and f["attempts_before"] > max_attempts:
            kept_on[str(f["ended_by"])].append((job, f["attempts_before"]))
        elif f is not None and f["attempts_after"]:
            again.append((job, f["attempts_after"]))
        else:
            kept_on[str(tries[job][max_attempts - 1]["outcome"])].append((job, len(tries[job])))
    rescue_dead = any(f["ended_by"] == "rescued" for f in firsts.values())
    lines = []
    if rescue_dead:
        late = kept_on.pop("rescued", [])  # it does dead-letter: later than it should
    if late:
        job, n = late[0]
        more = n - max_attempts
        others = f" ({len(late) - 1} jobs more ran past max_attempts)" if len(late) > 1 else ""
        lines.append(
            f"job {job} had {n} attempts where max_attempts is {max_attempts}{others}: your rescue_jobs lets "
            f"a job run {'one attempt' if more == 1 else f'{more} attempts'} more than max_attempts before "
            "it dead-letters it (compare attempts >= max_attempts)"
        )
    if "rescued" in kept_on:
        job, n = kept_on.pop("rescued")[0]
        lines.append(
            f"job {job} had {n} attempts where max_attempts is {max_attempts}, its attempt {max_attempts} "
            "rescued, and no job was dead-lettered by a rescue in the round: your rescue_jobs never "
            "dead-letters a job whose workers keep dying"
        )
    if again:
        job, n = again[0]
        lines.append(
            f"{len(again)} jobs ran again after they were dead-lettered: job {job}, dead-lettered after "
            f"its {max_attempts} attempts, began {n} more: your claim_jobs takes dead-lettered jobs "
            "(job_dead_timestamp IS NULL)"
        )
    for outcome, kept in kept_on.items():
        job, n = kept[0]
        lines.append(
            f"job {job} had {n} attempts where max_attempts is {max_attempts}: its attempt {max_attempts} "
            f"ended {outcome} and did not dead-letter it"
        )
    return lines
