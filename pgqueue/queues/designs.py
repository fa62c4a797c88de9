"""The queue designs the kit teaches, each declared once: its SQL, worker, lab, queries, panels and figures.

The command line, the fleet, the panels, the figures and the map of the lessons read this
registry, so a new design is added here (and in `sql/<folder>/` and its worker module) only.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from pgqueue import paths
from pgqueue.errors import PgQueueError
from pgqueue.paths import SQL_DIR

# What a design may offer; a panel or figure asks `require` before it reads a lab.
PANELS = frozenset({"kill", "fleet", "dashboard", "priority"})
FIGURES = frozenset({"pipeline_graph", "worker_timeline", "job_flow", "order_gates"})


@dataclass(frozen=True)
class Design:
    """One queue design: everything the kit needs to build its lab, run its workers and show them."""

    name: str  # the command line's name, e.g. "single-call"
    title: str  # how the lessons call it, e.g. "POC 2: single call"
    folder: str  # its steps live in sql/<folder>/; its lab database is <prefix><folder>
    submits: str = "pipe job"  # what its submit() creates and returns the id of: "job" or "pipe job"
    # sql/clients/observe.sql: every job in the figures' columns, and jobs per process and state
    observed_as: str = "single_call"  # job_history_<observed_as>, counts_by_process_<observed_as>
    panels: frozenset[str] = PANELS
    figures: frozenset[str] = FIGURES
    builds_on: tuple[str, ...] = ("shared",)  # sql/ folders whose steps run first (the shared model)
    set_up_when: str = "process_heartbeats"  # a lab is set up once this table exists (workers can register)
    worker_module: str = ""  # holds Worker, Options, submit(), job_counts(), jobs(); pgqueue.queues.<folder>

    @property
    def history_query(self) -> str:
        """sql/clients/observe.sql: every job, in the figures' columns."""
        return f"job_history_{self.observed_as}"

    @property
    def counts_query(self) -> str:
        """sql/clients/observe.sql: jobs per process and state."""
        return f"counts_by_process_{self.observed_as}"

    def __post_init__(self) -> None:
        if not self.worker_module:
            object.__setattr__(self, "worker_module", f"pgqueue.queues.{self.folder}")
        unknown = (self.panels - PANELS) | (self.figures - FIGURES)
        if unknown:
            raise ValueError(f"design {self.name!r} names unknown panels or figures: {sorted(unknown)}")

    def sql_folders(self) -> list[Path]:
        """The folders whose numbered steps build the lab, in order."""
        if not SQL_DIR.is_dir():
            paths.sql_dir()  # says in one line that the package was installed without its SQL
        return [SQL_DIR / folder for folder in (*self.builds_on, self.folder)]

    def worker(self) -> ModuleType:
        """The module with the design's `Worker`, `Options` and submit/observe functions."""
        return importlib.import_module(self.worker_module)

    def client(self, conn):
        """The design's client on an open connection to its lab (pgqueue.queues.client)."""
        from pgqueue.queues import client

        return client.of(self, conn)

    def offers(self, feature: str) -> bool:
        """Whether a panel or figure applies to this design."""
        return feature in self.panels or feature in self.figures

    def require(self, feature: str) -> Design:
        """This design, or a clear error saying which designs offer `feature`."""
        if not self.offers(feature):
            others = ", ".join(d.name for d in REGISTRY.values() if d.offers(feature)) or "none"
            raise PgQueueError(f"lab {self.name!r} has no {feature.replace('_', ' ')}; these do: {others}")
        return self


REGISTRY: dict[str, Design] = {
    design.name: design
    for design in [
        Design(
            "notify-listen",
            "POC 1: notify/listen",
            "notify_listen",
            submits="job",
            observed_as="notify_listen",
            panels=frozenset({"kill", "fleet", "dashboard"}),
            figures=frozenset({"pipeline_graph", "worker_timeline"}),
        ),
        Design("single-call", "POC 2: single call", "single_call"),
        Design("hardened", "the hardened queue", "hardened"),  # single call's tables and columns
    ]
}


def names() -> list[str]:
    """The designs' names, as the command line offers them."""
    return list(REGISTRY)


def get(name: str) -> Design:
    """The design called `name`, or a clear error listing the names."""
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise PgQueueError(f"unknown lab {name!r}; choose one of: {', '.join(REGISTRY)}") from None
