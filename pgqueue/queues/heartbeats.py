"""Heartbeats, the model both queues share: who a process is, beating, kill switches, who is alive."""

from __future__ import annotations

import functools
import secrets
import socket
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pgqueue import queries, values
from pgqueue.errors import PgQueueError
from pgqueue.queues import labs
from pgqueue.queues.events import EventLog

if TYPE_CHECKING:  # imported where used: workers start without them
    import pandas as pd

STALE_AFTER = 10.0  # seconds without a beat before a process counts as stale


_q = functools.partial(queries.load, "clients/heartbeats.sql")


@dataclass(frozen=True)
class Identity:
    """A running process as the database knows it: uuid, server, process name and version."""

    uuid: str
    server: str
    name: str
    version: str

    def __post_init__(self) -> None:
        values.uuid(self.uuid)
        values.label(self.name, "name", 100)
        values.label(self.version, "version", 20)
        values.label(self.server, "server", 100)

    @classmethod
    def new(cls, name: str, version: str, uuid: str | None = None) -> Identity:
        """A fresh identity on this host (a random uuid unless given)."""
        return cls(uuid or secrets.token_hex(6), socket.gethostname()[:100], name, version)

    @property
    def channel(self) -> str:
        """The NOTIFY channel the notify/listen queue answers this process on."""
        return f"channel_{self.uuid}"

    def __str__(self) -> str:
        return f"{self.name} {self.version} [{self.uuid}]"


def send_heartbeat(conn, who: Identity) -> None:
    """One beat: register the process or refresh its timestamp."""
    conn.execute(
        _q()["send_heartbeat"],
        {"uuid": who.uuid, "server": who.server, "name": who.name, "version": who.version},
    )


def mark_stopped(conn, uuid: str) -> None:
    """Say that the process exits cleanly: its state reads `stopped` until it beats again."""
    conn.execute(_q()["mark_stopped"], {"uuid": uuid})


def kill_switch(conn, uuid: str) -> bool:
    """Whether the process's kill switch is set (False for a process never seen)."""
    row = conn.execute(_q()["kill_switch"], {"uuid": uuid}).fetchone()
    return bool(row and row[0])


def set_kill_switch(poc: str, uuid: str, on: bool = True) -> None:
    """Set (or clear) a process's kill switch; an unknown uuid is an error."""
    with labs.connect(poc) as conn:
        if conn.execute(_q()["set_kill_switch"], {"uuid": uuid, "on": on}).fetchone() is None:
            raise PgQueueError(f"no process {uuid!r} has sent a heartbeat in lab {poc!r}")


def states(poc: str, stale_after: float = STALE_AFTER) -> pd.DataFrame:
    """Every process that ever beat in a lab, with its heartbeat age and alive / stale / stopped / killed."""
    import pandas as pd

    stale = pd.Timedelta(seconds=stale_after).to_pytimedelta()
    return pd.read_sql(_q()["states"], labs.engine(poc), params={"stale_after": stale})


class Beater:
    """A process that only beats, every `interval` seconds, until its kill switch is set (lesson 02)."""

    def __init__(self, poc: str, who: Identity, interval: float = 1.0, log: EventLog | None = None):
        self.poc, self.who, self.interval = poc, who, interval
        self.log = log or EventLog()
        self.stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def run(self) -> None:
        """Beat until killed (kill switch) or stopped; each beat is one event."""
        with labs.connect(
            self.poc, application_name=f"{labs.WORKER_APPLICATION} beater {self.who}"[:63]
        ) as conn:
            while not self.stopped.is_set():
                send_heartbeat(conn, self.who)
                if kill_switch(conn, self.who.uuid):
                    self.log.add(self.who.uuid, "kill", str(self.who))
                    return
                self.log.add(self.who.uuid, "beat", str(self.who))
                self.stopped.wait(self.interval)

    def start(self) -> Beater:
        """Run in a background thread with its own connection."""
        self._thread = threading.Thread(target=self.run, name=f"beater {self.who}", daemon=True)
        self._thread.start()
        return self

    @property
    def alive(self) -> bool:
        """Whether the background thread still runs."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop beating without the kill switch (the thread ends within one interval)."""
        self.stopped.set()
        if self._thread is not None:
            self._thread.join(timeout)
