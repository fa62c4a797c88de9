"""What every worker has: an identity, options, an event log, a stop flag, a named connection."""

import threading

import psycopg

from pgqueue import labs
from pgqueue.events import EventLog
from pgqueue.heartbeats import Identity


class WorkerBase:
    """The parts of a worker that do not depend on the queue design."""

    poc = ""  # set by each design's Worker

    def __init__(self, who: Identity, options, log: EventLog | None = None) -> None:
        self.who = who
        self.options = options
        self.log = log or EventLog()
        self.stop = threading.Event()  # set it to end the loop at its next step (no kill switch)

    def _event(self, kind: str, detail: str = "") -> None:
        self.log.add(self.who.uuid, kind, detail)

    def _connect(self) -> psycopg.Connection:
        # the name lets a lab reset tell workers from notebooks (labs.WORKER_APPLICATION)
        name = f"{labs.WORKER_APPLICATION} {self.poc} {self.who}"[:63]
        return labs.connect(self.poc, application_name=name)
