"""What a worker did, one event per line: kept in memory by thread workers, printed by processes.

A process worker prints a short line for people and, when given a file, writes the same event
as a JSON line with its epoch time for programs (the fleet reads those): a printed local clock
cannot be ordered across time zones or midnight.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
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

    def json(self) -> str:
        """The event as one JSON line, its time in seconds since the epoch."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, line: str) -> Event | None:
        """The event a JSON line holds, or None for a line that is not one (e.g. cut short)."""
        try:
            fields = json.loads(line)
            return cls(float(fields["at"]), str(fields["uuid"]), str(fields["kind"]), str(fields["detail"]))
        except (ValueError, TypeError, KeyError):
            return None


class EventLog:
    """A bounded, thread-safe list of events; optionally echoes each as a printed line."""

    def __init__(self, echo: bool = False, size: int = 10_000, json_path: Path | None = None) -> None:
        self._events: deque[Event] = deque(maxlen=size)
        self._lock = threading.Lock()
        self.echo = echo
        # line-buffered, so a reader sees each event as soon as it happened
        self._json = (
            # only its owner reads what the worker did (0600), like every file under the kit's home
            os.fdopen(os.open(json_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "a", buffering=1)
            if json_path
            else None
        )

    def add(self, uuid: str, kind: str, detail: str = "") -> Event:
        """Record (and maybe print) one event."""
        event = Event(time.time(), uuid, kind, detail)
        with self._lock:
            self._events.append(event)
        if self.echo:
            print(event.line(), flush=True)
        if self._json is not None:
            self._json.write(event.json() + "\n")
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
        return frame(self.events())


def frame(events: list[Event]) -> pd.DataFrame:
    """Events as a table: at (a timestamp), uuid, event, detail."""
    import pandas as pd

    rows = [(pd.Timestamp(e.at, unit="s"), e.uuid, e.kind, e.detail) for e in events]
    return pd.DataFrame(rows, columns=["at", "uuid", "event", "detail"])
