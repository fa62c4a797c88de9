"""Named database sessions a learner steps through cell by cell, each statement shown done or waiting.

    a, b = Session("A", "single-call"), Session("B", "single-call")
    a.run("SELECT find_job(...)")     # A: done, 1 row
    b.run("SELECT find_job(...)")     # B: waiting for a lock that A holds
    a.commit()                        # B's statement goes on: b.last shows its answer

A statement runs on its session's own connection in a background thread, so a cell never hangs
on a lock: `run` waits a moment, then shows the statement as waiting, with the sessions it waits
for (pg_blocking_pids). Sessions are not autocommit: a transaction stays open until `commit`.
"""

from __future__ import annotations

import contextlib
import html
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg

from pgqueue import queries
from pgqueue.errors import PgQueueError
from pgqueue.queues import labs

SETTLE = 1.0  # seconds `run` waits for a statement before showing it as waiting
CLOSE_WITHIN = 10.0  # seconds a closing session waits for its cancelled statement to end
SHOWN = 200  # characters of a statement's rows shown in its one line (`rows` keeps them all)
STATES = {
    "IDLE": "idle",
    "INTRANS": "in a transaction",
    "ACTIVE": "running",
    "INERROR": "in a failed transaction",
}
_open: dict[int, Session] = {}  # by backend pid, to name the sessions a statement waits for


def _q() -> queries.Queries:
    return queries.load("clients/sessions.sql")


@dataclass
class Step:
    """One statement of a session: running, or done with its rows or its error."""

    session: Session
    query: str
    rows: list[tuple] = field(default_factory=list)
    error: str | None = None
    _done: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def done(self) -> bool:
        """Whether the statement has ended (with rows or an error)."""
        return self._done.is_set()

    def wait(self, timeout: float = 10.0) -> Step:
        """Wait until the statement ends; PgQueueError if it still waits after `timeout` seconds."""
        if not self._done.wait(timeout):
            raise PgQueueError(f"{self.session.name}: still waiting after {timeout:g} s: {self.status()}")
        return self

    def status(self) -> str:
        """One line: done and what it returned, failed and why, or what it is waiting for."""
        if self.error is not None:
            return f"failed: {self.error}"
        if self.done:
            shown = ", ".join(map(str, self.rows[:3])) + (" ..." if len(self.rows) > 3 else "")
            if len(shown) > SHOWN:
                shown = shown[: SHOWN - 3] + "..."
            return f"done, {len(self.rows)} row(s)" + (f": {shown}" if self.rows else "")
        return self.session.waiting_for()

    def __repr__(self) -> str:
        return f"{self.session.name}: {self.status()}"

    def _repr_html_(self) -> str:
        colour = "#b42318" if self.error else "#1a7f37" if self.done else "#e65100"
        return f'<code style="color:{colour}">{html.escape(repr(self))}</code>'


class Session:
    """One named connection to a lab, driven a statement at a time."""

    def __init__(self, name: str, poc: str, connect: Callable[[], psycopg.Connection] | None = None) -> None:
        """A session on lab `poc`; `connect` gives its connection another way (through a pool, say)."""
        self.name, self.poc = name, poc
        self.conn = connect() if connect else labs.connect(poc)
        self.conn.autocommit = False
        self.pid = self.conn.info.backend_pid
        self.last: Step | None = None
        _open[self.pid] = self

    def run(self, query: str, params: dict | None = None, *, settle: float = SETTLE) -> Step:
        """Send one statement; wait up to `settle` s, then show it done, failed, or waiting."""
        if self.last is not None and not self.last.done:
            raise PgQueueError(f"{self.name}: its last statement is still running ({self.last.status()})")
        step = Step(self, query)
        self.last = step

        def send() -> None:
            try:
                cur = self.conn.execute(query, params)
                step.rows = cur.fetchall() if cur.description else []
            except psycopg.Error as exc:
                step.error = f"{exc.sqlstate} {exc.diag.message_primary or exc}"
            finally:
                step._done.set()

        threading.Thread(target=send, name=f"session {self.name}", daemon=True).start()
        step._done.wait(settle)
        return step

    def commit(self) -> Session:
        """End the open transaction with COMMIT (waits for a running statement first)."""
        self._idle("commit").conn.commit()
        return self

    def rollback(self) -> Session:
        """End the open transaction with ROLLBACK (waits for a running statement first)."""
        self._idle("rollback").conn.rollback()
        return self

    def kill(self) -> Session:
        """End this session from the server's side, as a worker killed mid-transaction dies."""
        with labs.connect(self.poc) as other:
            other.execute(_q()["terminate"], {"pid": self.pid})
        self.close()
        return self

    def close(self) -> None:
        """Close the connection (an open transaction rolls back), cancelling a statement still running."""
        _open.pop(self.pid, None)
        if self.last is not None and not self.last.done and not self.conn.closed:
            # libpq frees a connection that is closed under a statement another thread still
            # reads from: the process aborts. Cancelled, the statement ends its thread first.
            with contextlib.suppress(psycopg.Error):
                self.conn.cancel_safe(timeout=CLOSE_WITHIN)
            self.last._done.wait(CLOSE_WITHIN)
        self.conn.close()

    def waiting_for(self) -> str:
        """What the server says this session waits for now, naming the sessions it waits behind."""
        with labs.connect(self.poc) as other:
            row = other.execute(_q()["waiting"], {"pid": self.pid}).fetchone()
        if row is None:
            return "gone"
        event_type, event, blockers = row
        if event_type != "Lock":
            return f"running ({event_type or 'on CPU'}{f': {event}' if event else ''})"
        names = [_open[pid].name if pid in _open else f"pid {pid}" for pid in blockers]
        return f"waiting for a lock ({event}) that {' and '.join(names) or 'another session'} holds"

    def _idle(self, what: str) -> Session:
        if self.last is not None:
            self.last.wait()
        if self.conn.closed:
            raise PgQueueError(f"{self.name}: cannot {what}, the session is closed")
        return self

    def __repr__(self) -> str:
        status = self.conn.info.transaction_status.name
        state = "closed" if self.conn.closed else STATES.get(status, status.lower())
        return f"session {self.name} (pid {self.pid}, {state})"

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
