"""What a worker did, one event per line: kept in memory by thread workers, printed by processes."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: workers start without them
    import pandas as pd


@dataclass(frozen=True)
class Event:
    """One thing a worker did or saw."""

    at: float  # time.time()
    uuid: str
    kind: str  # one word: beat, SUCCESS, idle, kill, no-answer, ...
    detail: str = ""

    def line(self) -> str:
        """The event as the one short line a worker process prints."""
        clock = time.strftime("%H:%M:%S", time.localtime(self.at)) + f".{int(self.at % 1 * 1000):03d}"
        return f"{clock} {self.uuid} {self.kind} {self.detail}".rstrip()


class EventLog:
    """A bounded, thread-safe list of events; optionally echoes each as a printed line."""

    def __init__(self, echo: bool = False, size: int = 10_000) -> None:
        self._events: deque[Event] = deque(maxlen=size)
        self._lock = threading.Lock()
        self.echo = echo

    def add(self, uuid: str, kind: str, detail: str = "") -> Event:
        """Record (and maybe print) one event."""
        event = Event(time.time(), uuid, kind, detail)
        with self._lock:
            self._events.append(event)
        if self.echo:
            print(event.line(), flush=True)
        return event

    def events(self) -> list[Event]:
        """A copy of the events so far, oldest first."""
        with self._lock:
            return list(self._events)

    def kinds(self) -> list[str]:
        """The kinds of the events so far, oldest first."""
        return [event.kind for event in self.events()]

    def frame(self) -> pd.DataFrame:
        """The events as a table."""
        import pandas as pd

        rows = [
            {"at": pd.Timestamp(e.at, unit="s"), "uuid": e.uuid, "event": e.kind, "detail": e.detail}
            for e in self.events()
        ]
        return pd.DataFrame(rows, columns=["at", "uuid", "event", "detail"])
