"""What every checker shares: the learner's SQL tried on a scratch lab, and a verdict in plain words."""

from __future__ import annotations

import contextlib
import functools
import html
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import psycopg
from psycopg import sql

from pgqueue import queries
from pgqueue.queues import labs
from pgqueue.wait import until

T = TypeVar("T")
_PLACEHOLDER = re.compile(r"%(?:\(([^)]+)\).|%)")  # %(name)s and %%, as psycopg reads them


def _q() -> queries.Queries:
    return queries.load("kit/check.sql")


def checks() -> queries.Queries:
    """The queries checkers send to build and read their scenes (sql/clients/check.sql)."""
    return queries.load("clients/check.sql")


@dataclass
class Verdict:
    """What a checker found: what held, and what is wrong, each in one plain sentence."""

    subject: str  # what was checked, e.g. "your send_heartbeat"
    held: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)

    @property
    def holds(self) -> bool:
        """Whether every check held (and at least one ran)."""
        return bool(self.held) and not self.wrong

    def __bool__(self) -> bool:
        return self.holds

    def expect(self, ok: bool, held: str, wrong: str) -> bool:
        """Record one check: `held` when `ok`, else `wrong`; returns `ok`."""
        (self.held if ok else self.wrong).append(held if ok else wrong)
        return ok

    def refuse(self, wrong: str) -> Verdict:
        """Record a problem that stops the check (nothing further can be tried); returns self."""
        self.wrong.append(wrong)
        return self

    def __str__(self) -> str:
        head = f"{self.subject} holds." if self.holds else f"{self.subject} does not hold yet."
        return "\n".join([head, *(f"  ✗ {w}" for w in self.wrong), *(f"  ✓ {h}" for h in self.held)])

    def _repr_html_(self) -> str:
        colour, head = ("#1a7f37", "holds") if self.holds else ("#b42318", "does not hold yet")
        items = [f"<li>✗ {html.escape(w)}</li>" for w in self.wrong]
        items += [f"<li>✓ {html.escape(h)}</li>" for h in self.held]
        return (
            f'<div style="border-left:4px solid {colour};padding-left:8px">'
            f'<b style="color:{colour}">{html.escape(self.subject)} {head}.</b>'
            f'<ul style="margin:4px 0">{"".join(items)}</ul></div>'
        )


def written(text: object, verdict: Verdict) -> str | None:
    """The learner's SQL, or None after telling the verdict why there is nothing to try yet.

    Only a missing answer is refused here: what an answer says, comments and TODOs included,
    never decides; what it does is judged.
    """
    if not isinstance(text, str):
        verdict.refuse(f"expected your SQL as a string, got {type(text).__name__}")
        return None
    if not text.strip():
        verdict.refuse("there is no SQL yet: write it in the string, then run the cell again")
        return None
    return text


def said(exc: BaseException) -> str:
    """An error in PostgreSQL's own words (its primary message), else as Python prints it."""
    if isinstance(exc, psycopg.Error) and exc.diag.message_primary:
        return exc.diag.message_primary
    return str(exc)


def query_refused(text: str, exc: BaseException) -> str:
    """PostgreSQL's words for a query of the learner's it refused, placed in what they wrote (the
    query was sent with its %(name)s placeholders)."""
    placed = where(text, exc, with_parameters=True) if isinstance(exc, psycopg.Error) else ""
    return f"PostgreSQL refused your query: {said(exc)}{placed}"


def sendable(conn: psycopg.Connection, text: str, parameters: Sequence[str], verdict: Verdict) -> bool:
    """Whether psycopg can send `text` with the named `parameters` the judge passes; else a ✗ line.

    psycopg reads the placeholders itself before PostgreSQL sees the query: a positional %s, a name
    the judge does not pass or a lone % never reach the server, and would end the judge in a
    traceback rather than a verdict.
    """
    try:
        psycopg.ClientCursor(conn).mogrify(text, dict.fromkeys(parameters, 0))
    except (TypeError, psycopg.ProgrammingError) as exc:
        names = ", ".join(f"%({name})s" for name in parameters)
        verdict.refuse(
            f"psycopg could not send your SQL ({exc}): the checker passes {names} by name, so write each "
            "value as such, and any other % as %%"
        )
        return False
    return True


def as_written(text: str, position: int) -> int:
    """Where character `position` (1-based) of the query psycopg sent for `text` falls in `text`.

    psycopg sends each %(name)s placeholder as $1, $2, ... (a name used again as its number again)
    and %% as %, so PostgreSQL's positions after a placeholder are not those of what was written.
    """
    numbers: dict[str, int] = {}
    sent = done = 0  # characters of the sent query, and of `text`, before the next placeholder
    for found in _PLACEHOLDER.finditer(text):
        if position - 1 < sent + found.start() - done:
            break
        sent, done = sent + found.start() - done, found.start()
        name = found.group(1)
        replaced = "%" if name is None else f"${numbers.setdefault(name, len(numbers) + 1)}"
        if position - 1 < sent + len(replaced):
            return done + 1  # within the placeholder: at its start
        sent, done = sent + len(replaced), found.end()
    return done + position - sent


def located(text: str, position: int) -> str:
    """Where character `position` (1-based, as PostgreSQL counts) falls in `text`: a line and a
    column of what the learner wrote, with that line shown."""
    # PostgreSQL places an error at the end of input (an unclosed parenthesis) past a last newline:
    # shown at the end of the last line written, not on a line that is not there
    before = text[: min(max(position - 1, 0), len(text.rstrip()))]
    line = before.count("\n") + 1
    column = len(before) - (before.rfind("\n") + 1) + 1
    lines = text.splitlines() or [text]
    return f"at line {line}, column {column} of your SQL: {lines[min(line, len(lines)) - 1].strip()!r}"


def where(text: str, exc: psycopg.Error, *, with_parameters: bool = False) -> str:
    """', at line L, column C of your SQL: ...' for the place PostgreSQL gives in its error, or ''.

    `with_parameters`: `text` was sent with %(name)s placeholders (see `as_written`).
    """
    position = exc.diag.statement_position
    if not position:
        return ""
    position = as_written(text, int(position)) if with_parameters else int(position)
    return f", {located(text, position)}"


def install(
    conn: psycopg.Connection,
    text: str,
    verdict: Verdict,
    *,
    replaces: Sequence[str] = (),
) -> bool:
    """Run the learner's SQL in one transaction, after dropping the reference `replaces` routines.

    Dropping first means only the learner's version can be there afterwards, whether they
    wrote CREATE or CREATE OR REPLACE. False, with PostgreSQL's words in the verdict, on an error,
    and where in the learner's text it is.
    """
    try:
        with conn.transaction():
            for routine in replaces:
                conn.execute(sql.SQL(_q()["drop_routine"]).format(routine=sql.Identifier(routine)))
            conn.execute(text)
    except psycopg.Error as exc:
        unwritten = " (it still has a TODO: is that part written?)" if "TODO" in text else ""
        said = exc.diag.message_primary or exc
        verdict.refuse(f"PostgreSQL refused your SQL: {said}{where(text, exc)}{unwritten}")
        return False
    missing = [r for r in replaces if not conn.execute(_q()["routine_exists"], {"name": r}).fetchone()[0]]
    if missing:
        verdict.refuse(f"your SQL ran but created no {', '.join(missing)}: check the name you gave it")
        return False
    return True


class Refused(Exception):
    """Raised inside a `checker`'s judge to stop the check: its message becomes the verdict's last ✗ line."""


def checker(
    subject: str,
    poc: str,
    upto: str | None = None,
    *,
    examples: bool = False,
    fixes: bool = False,
    replaces: Sequence[str] | None = (),
    sends: Sequence[str] | None = None,
    before: Callable[[psycopg.Connection], object] | None = None,
) -> Callable[[Callable[..., object]], Callable[..., Verdict]]:
    """The preamble every checker shares, written once: decorate `judge(verdict, lab, conn, text, poc,
    **options)` and get the checker `(text, poc=poc, **options) -> Verdict`.

    In order: a `Verdict(subject)`; the learner's `text` refused if there is none (`written`); a scratch
    lab of `poc` built up to step `upto` (`examples`, `fixes` as `labs.scratch`) and one connection
    `conn` to it; `before(conn)` if given; then `text` is either checked as a query psycopg can send
    with the named parameters `sends` (`sendable`), or installed in place of the `replaces` routines
    (`install`: a refused install is a ✗ line with its place in the text), or, with `replaces=None`,
    left to the judge. Only then `judge` runs; an early `return` in it ends the check, and a `Refused`
    it raises becomes a ✗ line. Every failure above is one ✗ line, and the verdict is returned::

        @checker("your next_processes", "notify-listen", "pipelines", replaces=["next_processes"])
        def next_processes(verdict, lab, conn, text, poc):
            verdict.expect(...)  # the checks; `return` where one failed that the rest needs
    """

    def decorate(judge: Callable[..., object]) -> Callable[..., Verdict]:
        def run(text: object, poc: str = poc, **options: object) -> Verdict:
            verdict = Verdict(subject)
            if written(text, verdict) is None:
                return verdict
            with labs.scratch(poc, upto, examples=examples, fixes=fixes) as lab, lab.connect() as conn:
                if before is not None:
                    before(conn)
                if sends is not None:
                    ready = sendable(conn, text, sends, verdict)
                else:
                    ready = replaces is None or install(conn, text, verdict, replaces=replaces)
                if ready:
                    try:
                        judge(verdict, lab, conn, text, poc, **options)
                    except Refused as exc:
                        verdict.refuse(str(exc))
            return verdict

        # its name and docstring, not its signature: help() shows how the checker itself is called
        functools.update_wrapper(run, judge, assigned=("__module__", "__name__", "__qualname__", "__doc__"))
        del run.__wrapped__
        return run

    return decorate


def together(n: int, call: Callable[[int], T], timeout: float = 30.0) -> list[T | BaseException]:
    """Run `call(0)` ... `call(n-1)` on n threads released together by a barrier.

    Each result is what the call returned, or the exception it raised: a race is judged by
    what every racer saw.
    """
    release = threading.Barrier(n, timeout=timeout)
    results: list[T | BaseException] = [TimeoutError("never ran")] * n

    def racer(i: int) -> None:
        try:
            release.wait()
            results[i] = call(i)
        except BaseException as exc:  # noqa: BLE001 - handed back to be judged
            results[i] = exc

    threads = [threading.Thread(target=racer, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    return results


class Call:
    """One call on a thread of its own, started at once: what it returned or raised, once done."""

    def __init__(self, call: Callable[[], T]) -> None:
        self.result: object = TimeoutError("never answered")
        self._thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self._thread.start()

    def _run(self, call: Callable[[], object]) -> None:
        try:
            self.result = call()
        except BaseException as exc:  # noqa: BLE001 - handed back to be judged
            self.result = exc

    @property
    def done(self) -> bool:
        """Whether the call returned or raised."""
        return not self._thread.is_alive()

    def join(self, timeout: float = 15.0) -> object:
        """What the call returned or raised (TimeoutError if it is still running after `timeout` s)."""
        self._thread.join(timeout)
        return self.result


class Hold:
    """A kit trigger that stops a caller's session at one point of its call while the judge holds
    the lock of that caller's slot: one side of a race held, so that a schedule is forced, not hoped for.

    Made by `holding`; `watch` is the judge's own connection, which holds the slots' locks.
    """

    def __init__(self, watch: psycopg.Connection) -> None:
        self.watch = watch
        self._closed: set[int] = set()

    def arm(self, caller: psycopg.Connection, slot: int) -> None:
        """Stop `caller`'s session at the hold, whenever the lock of `slot` is held (0: never)."""
        caller.execute(_q()["hold_slot"], {"slot": str(slot) if slot else ""})

    def close(self, slot: int) -> None:
        """Hold the lock of `slot`: a session armed with it stops at the hold."""
        self.watch.execute(_q()["hold_close"], {"slot": slot})
        self._closed.add(slot)

    def open(self, slot: int) -> None:
        """Let go of `slot`'s lock: a session stopped at the hold goes on."""
        if slot in self._closed:
            self.watch.execute(_q()["hold_open"], {"slot": slot})
            self._closed.discard(slot)

    def where(self, pid: int) -> str | None:
        """'held' while backend `pid` stands at the hold, the lock it waits for otherwise, or None."""
        row = self.watch.execute(_q()["hold_where"], {"pid": pid}).fetchone()
        return row[0] if row else None

    def stops(self, caller: psycopg.Connection, call: Call, timeout: float = 10.0) -> str | None:
        """Once `call` on `caller` answered or stopped: None if it answered, else 'held' or the lock
        it waits for. Raises Timeout if it did neither within `timeout` s."""
        pid = caller.info.backend_pid

        def seen() -> str | None:
            return "answered" if call.done else self.where(pid)

        stop = until(seen, timeout, "the caller answering or stopping at a lock")
        return None if stop == "answered" else stop

    def advisory(self, caller: psycopg.Connection) -> int:
        """How many advisory locks `caller`'s session holds, the hold's own aside."""
        return advisory_locks(self.watch, caller)

    def open_all(self) -> None:
        """Let go of every slot still held."""
        for slot in sorted(self._closed):
            self.open(slot)


def advisory_locks(watch: psycopg.Connection, caller: psycopg.Connection) -> int:
    """How many advisory locks `caller`'s session holds (a kit hold's own aside), read on `watch`."""
    return watch.execute(_q()["advisory_held"], {"pid": caller.info.backend_pid}).fetchone()[0]


@contextlib.contextmanager
def holding(
    watch: psycopg.Connection,
    table: str,
    *,
    when: str,
    event: str,
    level: str = "ROW",
    inside: str | None = None,
) -> Iterator[Hold]:
    """A hold on `table` (`when` BEFORE or AFTER, `event` INSERT/UPDATE/DELETE, `level` ROW or
    STATEMENT), stopping armed sessions only while a routine named `inside` runs, if given.

    `when` COMMIT stops a session at the commit of a transaction that made such a change, once
    every statement of it ran (a deferred constraint trigger: a row at a time, inside nothing).
    The trigger is dropped and every slot let go on the way out.
    """
    if when not in ("BEFORE", "AFTER", "COMMIT") or event not in ("INSERT", "UPDATE", "DELETE"):
        raise ValueError(
            f"a hold is BEFORE, AFTER or at the COMMIT of an INSERT, UPDATE or DELETE, not {when} {event}"
        )
    if level not in ("ROW", "STATEMENT") or (when == "COMMIT" and (level != "ROW" or inside)):
        raise ValueError(
            f"a hold is FOR EACH ROW or STATEMENT (at a COMMIT, a row inside nothing), not {level}"
        )
    name = sql.Identifier(f"_kit_hold_{when}_{event}_{level}".lower())
    parts = {
        "name": name,
        "table": sql.Identifier(table),
        "when": sql.SQL(when),
        "event": sql.SQL(event),
        "level": sql.SQL(level),
        "inside": sql.Literal(inside) if inside else sql.SQL(""),
    }
    watch.execute(_q()["hold_function"])
    watch.execute(sql.SQL(_q()["hold_at_commit" if when == "COMMIT" else "hold_trigger"]).format(**parts))
    hold = Hold(watch)
    try:
        yield hold
    finally:
        hold.open_all()
        watch.execute(sql.SQL(_q()["hold_drop"]).format(name=name, table=parts["table"]))
