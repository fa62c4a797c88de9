"""Answers learners write, one module per judge: wrong ones named by their mistake, right ones by style.

A corpus module is named after its lesson and judge (`l02_heartbeat_upsert`) and defines:

    JUDGE = check.heartbeat_upsert        # what takes the answer and returns a Verdict
    WRONG = [Wrong("never-updates-server-name", SQL, says="server_name")]
    RIGHT = [Right("plpgsql-if-found", SQL)]

and, when the judge needs a tool pip cannot bring, `NEEDS = ("pgbouncer", present, install)`
for `tests.tools.require`; `MARKS` are pytest marks for every answer (the capstone's rounds
are `chaos`: run once per CI run, not again on the second server). `tests/check/test_corpora.py`
runs every answer through its judge: a wrong one must be refused with a ✗ line that contains
`says` (and the verdict must say each part of `also`), a right one must hold.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Wrong:
    """An answer a learner plausibly writes that is wrong, and part of the ✗ sentence they must read."""

    mistake: str  # kebab-case, what the learner got wrong: "inner-join-drops-silent-holders"
    answer: object  # what the judge takes: SQL text, or for the capstone a dict of pieces
    says: str  # a part of one ✗ line of the verdict
    also: tuple[str, ...] = ()  # other parts the verdict must say, anywhere in it
    since: int = 0  # the PostgreSQL major version the mistake shows on, where it is server-specific


@dataclass(frozen=True)
class Right:
    """A correct answer written in another style than the reference, which must hold."""

    style: str  # kebab-case: "plpgsql-loop", "cte-with-for-share", "after-trigger"
    answer: object


def variant(base: str, old: str, new: str) -> str:
    """`base` with its one `old` written as `new`: an answer given as the one change it makes."""
    assert base.count(old) == 1, f"{old!r} stands {base.count(old)} times in the base, not once"
    return base.replace(old, new)


def uncommented(sql: str) -> str:
    """`sql` without its comment lines: a reference routine as a learner writes it, from the kit's text."""
    return "".join(line for line in str(sql).splitlines(keepends=True) if not line.lstrip().startswith("--"))


def cut(text: str, start: str, end: str | None = None) -> str:
    """`text` from its first `start` up to the first `end` after it (to its end without one)."""
    first = text.index(start)
    return text[first : text.index(end, first) if end else None]
