"""Many workers at once: start them as threads or OS processes, list, stop, hard-kill, clean up."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pgqueue import children, paths
from pgqueue.errors import PgQueueError
from pgqueue.queues import designs, heartbeats, options
from pgqueue.queues.events import Event, EventLog, frame
from pgqueue.queues.heartbeats import Identity
from pgqueue.wait import Timeout, until

if TYPE_CHECKING:  # imported where used: workers start without them
    import pandas as pd

MODES = ("thread", "process")


@dataclass
class Member:
    """One worker of a fleet: a thread in this process, or an OS process with its own log."""

    who: Identity
    mode: str
    options: object  # the worker's Options: its work time bounds how long a graceful stop takes
    worker: object | None = None  # thread mode: the Worker
    thread: threading.Thread | None = None
    process: subprocess.Popen | None = None  # process mode
    log_path: Path | None = None  # what the process printed, for people
    events_path: Path | None = None  # the same events as JSON lines, for the fleet

    @property
    def alive(self) -> bool:
        """Whether the worker still runs."""
        if self.thread is not None:
            return self.thread.is_alive()
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int:
        """The worker's OS process (this one, for a thread)."""
        return self.process.pid if self.process is not None else os.getpid()

    def events(self, log: EventLog) -> list[Event]:
        """What the worker reported so far."""
        if self.thread is not None:
            return [e for e in log.events() if e.uuid == self.who.uuid]
        if self.events_path is None or not self.events_path.exists():
            return []
        lines = self.events_path.read_text(errors="replace").splitlines()
        return [e for e in map(Event.from_json, lines) if e is not None]


class Fleet:
    """The workers one notebook (or one `demo`) started in one lab; `close()` stops them all."""

    def __init__(self, poc: str, log: EventLog | None = None, *, env: dict[str, str] | None = None) -> None:
        self.poc = poc
        # process workers' environment on top of this one's: PGQUEUE_DSN to a pooler, say
        self._env = {**os.environ, **env} if env else None
        self.module = designs.get(poc).require("fleet").worker()
        self.log = log or EventLog()
        self._members: dict[str, Member] = {}
        # process workers' output, made on first need under the kit's home: a kernel killed
        # before it could clean up leaves nothing in /tmp, and a test run removes its home
        self._logs = paths.home() / "fleet-logs" / f"{os.getpid()}-{id(self):x}"
        self._all: list[Member] = []
        # runs on close(), when the fleet is garbage, or at interpreter exit (a kernel shutting
        # down), whichever comes first: workers never outlive the notebook that started them
        self._finalizer = weakref.finalize(self, _close_all, self._all, self._logs)

    # --- starting -------------------------------------------------------------------------

    def start(
        self, name: str, version: str, count: int = 1, *, mode: str = "thread", worker_options=None
    ) -> list[Member]:
        """Start `count` workers of process `name` `version`; their members."""
        if mode not in MODES:
            raise PgQueueError(f"mode is 'thread' or 'process', got {mode!r}")
        if mode == "thread" and self._env is not None:
            raise PgQueueError("a fleet given an environment starts process workers only (mode='process')")
        if not isinstance(count, int) or count < 1:
            raise PgQueueError(f"count is a whole number of workers, 1 or more, got {count!r}")
        opts = worker_options or self.module.Options()
        started = []
        for _ in range(count):
            who = Identity.new(name, version)
            member = self._start_thread(who, opts) if mode == "thread" else self._start_process(who, opts)
            self._members[who.uuid] = member
            self._all.append(member)
            started.append(member)
        return started

    def launch(
        self, plan: Iterable[tuple[str, str, int]], *, mode: str = "thread", worker_options=None
    ) -> list[Member]:
        """Start several kinds at once: (name, version, count) each."""
        return [
            m
            for name, version, count in plan
            for m in self.start(name, version, count, mode=mode, worker_options=worker_options)
        ]

    def _start_thread(self, who: Identity, opts) -> Member:
        worker = self.module.Worker(who, opts, self.log)
        member = Member(who, "thread", opts, worker=worker)

        def run() -> None:
            try:
                worker.run()
            except Exception as exc:  # reported as an event: a background thread must not print
                self.log.add(who.uuid, "crash", f"{type(exc).__name__}: {exc}")

        member.thread = threading.Thread(target=run, name=f"worker {who}", daemon=True)
        member.thread.start()
        return member

    def _start_process(self, who: Identity, opts) -> Member:
        paths.private_folder(self._logs)
        log_path = self._logs / f"{who.uuid}.log"
        events_path = self._logs / f"{who.uuid}.events.jsonl"
        argv = [sys.executable, "-m", "pgqueue", "worker", "--poc", self.poc, who.name, who.version]
        argv += ["--uuid", who.uuid, "--events-file", str(events_path), *options.to_argv(opts)]
        with os.fdopen(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as log:
            proc = children.spawn(argv, env=self._env, stdout=log, stderr=subprocess.STDOUT)
        return Member(who, "process", opts, process=proc, log_path=log_path, events_path=events_path)

    # --- looking ----------------------------------------------------------------------------

    def members(self, alive: bool | None = None) -> list[Member]:
        """The workers started here (only live or only ended ones when `alive` is given)."""
        return [m for m in self._members.values() if alive is None or m.alive == alive]

    def member(self, uuid: str) -> Member:
        """One worker by uuid."""
        try:
            return self._members[uuid]
        except KeyError:
            raise PgQueueError(f"no worker {uuid!r} in this fleet") from None

    def table(self) -> pd.DataFrame:
        """One row per worker: who, how it runs, whether it runs, its heartbeat state."""
        import pandas as pd

        rows = [
            {
                "uuid": m.who.uuid,
                "name": m.who.name,
                "version": m.who.version,
                "mode": m.mode,
                "pid": m.pid,
                "running": m.alive,
            }
            for m in self._members.values()
        ]
        frame = pd.DataFrame(rows, columns=["uuid", "name", "version", "mode", "pid", "running"])
        beats = heartbeats.states(self.poc)[["process_uuid", "beat_age_s", "process_busy", "state"]]
        return frame.merge(beats.rename(columns={"process_uuid": "uuid"}), on="uuid", how="left")

    def events(self) -> pd.DataFrame:
        """Everything the workers reported, oldest first."""
        table = frame([e for m in self._members.values() for e in m.events(self.log)])
        return table.sort_values("at", kind="stable").reset_index(drop=True)

    # --- stopping ---------------------------------------------------------------------------

    def kill(self, uuid: str) -> None:
        """Flip the worker's kill switch (the original's way): it exits at its next heartbeat."""
        self.member(uuid)
        heartbeats.set_kill_switch(self.poc, uuid)

    def wait_exited(self, uuid: str, timeout: float) -> None:
        """Wait until the worker has exited; Timeout if it has not within `timeout` s."""
        member = self.member(uuid)
        until(lambda: not member.alive, timeout, f"worker {member.who} exiting")
        if member.process is not None:
            member.process.wait()  # reap: no zombie left behind

    def stop(self, uuids: Iterable[str] | None = None, timeout: float = 10.0) -> None:
        """Stop workers (all by default): kill switch first; those still running after `timeout` s
        are asked to stop as Ctrl-C would (finish the job held), and stopped at once after that."""
        targets = [self.member(u) for u in uuids] if uuids is not None else self.members(alive=True)
        for member in targets:
            # a worker that never beat has no switch yet: the graceful stop below ends it
            with contextlib.suppress(PgQueueError):
                heartbeats.set_kill_switch(self.poc, member.who.uuid)
        late = []
        for member in targets:
            try:
                self.wait_exited(member.who.uuid, timeout)
            except Timeout:
                late.append(member)
        _stop_gracefully(late)

    def hard_kill(self, uuid: str) -> int:
        """SIGKILL a process worker (no cleanup at all: what a crash looks like); its exit code."""
        member = self.member(uuid)
        if member.process is None:
            raise PgQueueError(f"worker {member.who} is a thread: only process workers can be killed")
        os.killpg(member.process.pid, signal.SIGKILL)
        return member.process.wait()

    def close(self) -> None:
        """Stop every worker as Ctrl-C would (each finishes and hands over the job it holds), then
        remove the fleet's log folder. A worker still busy after its longest job is stopped at once."""
        self._finalizer()

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _grace(member: Member) -> float:
    """How long a graceful stop may take: the longest job, one wait for an answer, and a margin."""
    work = getattr(member.options, "work", (0.0, 0.0))[1]
    return work + getattr(member.options, "timeout", 0.0) + 5.0


def _ask_to_stop(member: Member) -> None:
    if member.worker is not None:
        member.worker.request_stop()
    elif member.process is not None and member.process.poll() is None:
        # what Ctrl-C, `docker compose stop` and a dying owner send: finish the job, then exit
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(member.process.pid, signal.SIGTERM)


def _stop_gracefully(members: list[Member]) -> None:
    """Ask every member to stop at once, give each its grace, then stop those left immediately."""
    for member in members:
        _ask_to_stop(member)
    for member in members:
        if member.thread is not None:
            member.thread.join(_grace(member))
            if member.thread.is_alive():
                member.worker.request_abort()
                member.thread.join(5)
        elif member.process is not None:
            try:
                member.process.wait(_grace(member))
            except subprocess.TimeoutExpired:
                children.stop(member.process, timeout=2)  # a second SIGTERM: at once; then SIGKILL


def _close_all(members: list[Member], logs: Path) -> None:
    _stop_gracefully([m for m in members if m.alive])
    for member in members:
        if member.process is not None:
            member.process.wait()  # reap: no zombie left behind
    shutil.rmtree(logs, ignore_errors=True)
