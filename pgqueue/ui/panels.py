"""Panels for the lessons: kill switches, priorities, a fleet, and a live dashboard (ipywidgets 8).

Every control acts through a method code can call too (it sets the control's value, so the same
observer runs as for a click): notebooks and tests drive the panels without a browser. What a
person changed by hand is kept in the panel's `clicks`, which a lesson reads back.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import weakref
from collections.abc import Iterator
from typing import NamedTuple

import ipywidgets as w
import pandas as pd
import plotly.graph_objects as go

from pgqueue import queries
from pgqueue.errors import PgQueueError
from pgqueue.queues import designs, heartbeats, labs
from pgqueue.queues import fleet as fleets
from pgqueue.ui import figures


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, border=0) if len(frame) else "<i>none</i>"


class Click(NamedTuple):
    """One change a person made on a panel: what, on which row, to which value."""

    action: str  # "kill", "priority", "submit"
    target: str | int  # a process uuid, a pipe job id, a request id
    value: object

    def __str__(self) -> str:
        return f"{self.action} {self.target}: {self.value}"


def _button(description: str, icon: str, pressed, **how) -> w.Button:
    """A button that calls `pressed()` when clicked."""
    button = w.Button(description=description, icon=icon, **how)
    button.on_click(lambda _: pressed())
    return button


class _Panel(w.VBox):
    """A panel whose controls write to the lab: what a person changed is kept in `clicks`.

    The same change made by code (under `_flag("_by_code")`) is not a click, and a control set to
    show the database's value (under `_flag("_syncing")`) writes nothing back. A lesson asks the
    learner to click, then reads `clicks`; a headless run, where nobody clicks, falls back to the
    panel's method (which takes the same path as a click).
    """

    def __init__(self, children) -> None:
        self.clicks: list[Click] = []
        self._by_code = self._syncing = False
        super().__init__(children)

    def _control(self, controls: dict, key, make, action: str, act) -> w.Widget:
        """The control of `key` in `controls`, made by `make()` the first time; a change of its
        value by a person or by code calls `act(key, value)`, recorded as a click by a person."""
        if key not in controls:

            def on_change(change) -> None:
                if not self._syncing:
                    if not self._by_code:
                        self.clicks.append(Click(action, key, change["new"]))
                    act(key, change["new"])

            controls[key] = make()
            controls[key].observe(on_change, names="value")
        return controls[key]

    @contextlib.contextmanager
    def _flag(self, name: str) -> Iterator[None]:
        setattr(self, name, True)
        try:
            yield
        finally:
            setattr(self, name, False)


# A state's badge colour: a live worker green, a killed one red, one that is gone grey.
STATE_COLOURS = {"alive": "#2e7d32", "killed": "#c62828", "stopped": "#757575", "stale": "#757575"}
LIVE = "alive"  # the state of a worker that beats, has no kill switch set and did not say it stopped


def state_badge(state: str) -> str:
    """A state as a small coloured label (the words stay inside <b> for a reader and a search)."""
    colour = STATE_COLOURS.get(state, "#455a64")
    return (
        f'<span class="pgqueue-state pgqueue-state-{state}" style="background:{colour};color:white;'
        f'border-radius:4px;padding:1px 6px"><b>{state}</b></span>'
    )


class KillSwitchPanel(_Panel):
    """Live workers with a kill toggle each (a "show all" box lists every registered process).

    `stop_all()` flips every live worker's toggle. A row's badge says its state: alive (green),
    killed (red), stopped or stale (grey).
    """

    def __init__(self, poc: str, stale_after: float = heartbeats.STALE_AFTER) -> None:
        self.poc, self.stale_after = designs.get(poc).require("kill").name, stale_after
        self.toggles: dict[str, w.ToggleButton] = {}
        self.labels: dict[str, w.HTML] = {}
        self.states: dict[str, str] = {}
        self.shown: list[str] = []  # the uuids of the rows on display, in the panel's order
        refresh = _button("Refresh", "refresh", self.refresh)
        self.stop_all_button = _button("Stop all", "stop", self.stop_all, button_style="danger")
        self.show_all = w.Checkbox(
            value=False,
            description="show all (killed, stopped, stale too)",
            indent=False,
            layout={"width": "auto"},
        )
        self.show_all.observe(lambda _: self.refresh(), names="value")
        self.summary = w.HTML()
        self.rows = w.VBox()
        super().__init__([w.HBox([refresh, self.stop_all_button, self.show_all]), self.summary, self.rows])
        self.refresh()

    def refresh(self) -> None:
        """Read the heartbeats again: a row per live process (per process with "show all")."""
        states = heartbeats.states(self.poc, self.stale_after)
        with self._flag("_syncing"):  # showing the database's value must not write it back
            for r in states.itertuples():
                toggle = self._control(self.toggles, r.process_uuid, self._toggle, "kill", self._flipped)
                self.states[r.process_uuid] = r.state
                toggle.value = bool(r.process_kill_switch)
                toggle.button_style = "danger" if r.process_kill_switch else "warning"
                if r.process_uuid not in self.labels:
                    self.labels[r.process_uuid] = w.HTML(layout={"width": "auto"})
                self.labels[r.process_uuid].value = (
                    f"<code>{r.process_uuid}</code> {r.process_name} {r.process_version} · "
                    f"beat {r.beat_age_s:.1f} s ago · {'busy' if r.process_busy else 'idle'} · "
                    f"{state_badge(r.state)}"
                )
        live = states[states["state"] == LIVE]
        shown = states if self.show_all.value else live
        self.shown = list(shown["process_uuid"])
        hidden = len(states) - len(live)
        self.summary.value = f"{len(live)} live worker(s) of {len(states)} registered" + (
            f" · {hidden} killed, stopped or stale hidden: tick <i>show all</i>"
            if hidden and not self.show_all.value
            else ""
        )
        self.rows.children = [w.HBox([self.toggles[u], self.labels[u]]) for u in self.shown]

    @staticmethod
    def _toggle() -> w.ToggleButton:
        return w.ToggleButton(description="kill", icon="power-off")

    def _flipped(self, uuid: str, on: bool) -> None:
        heartbeats.set_kill_switch(self.poc, uuid, on)
        self.refresh()

    def set_kill(self, uuid: str, on: bool = True) -> None:
        """Flip one process's toggle, as a click does."""
        if uuid not in self.toggles:
            self.refresh()
        if uuid not in self.toggles:
            raise PgQueueError(f"no process {uuid!r} has sent a heartbeat in lab {self.poc!r}")
        with self._flag("_by_code"):
            self.toggles[uuid].value = on

    def stop_all(self) -> None:
        """Flip every live worker's toggle on."""
        self.refresh()
        for uuid in [u for u, state in self.states.items() if state == LIVE]:
            self.toggles[uuid].value = True  # a click on Stop all: each toggle counts as a click


CHAR_PX = 9  # a generous width per character of a widget's 13 px font
DESCRIPTION_PX = 120  # a description on the left, and the select's scroll bar


def option_width(labels: list[str]) -> str:
    """A CSS width for a select whose longest option must show in full."""
    return f"{DESCRIPTION_PX + CHAR_PX * max(map(len, labels), default=20)}px"


class PriorityPanel(_Panel):
    """A lab's open pipe jobs with a priority each, and a form that submits a new request."""

    def __init__(self, poc: str = "single-call") -> None:
        self.poc = designs.get(poc).require("priority").name
        self.queue = designs.get(poc).worker()
        self.inputs: dict[int, w.BoundedIntText] = {}
        self.changed_jobs = 0
        self.message = w.HTML()
        self.rows = w.VBox()
        self.pipelines = w.SelectMultiple(
            description="pipelines", rows=5, style={"description_width": "initial"}
        )
        self.request = w.IntText(description="request id")
        self.priority = w.BoundedIntText(value=100, min=-32768, max=32767, description="priority")
        self.submit_button = _button("Submit request", "paper-plane", self._submit_clicked)
        form = w.VBox([self.pipelines, self.request, self.priority, self.submit_button])
        refresh = _button("Refresh", "refresh", self.refresh)
        super().__init__([refresh, self.rows, w.HTML("<b>New request</b>"), form, self.message])
        self.refresh()

    def refresh(self) -> None:
        """Read the pipe jobs and pipelines again."""
        pipes = self.queue.pipe_jobs()
        open_pipes = pipes[~pipes["pipe_job_finished"]]
        with self._flag("_syncing"):
            for r in open_pipes.itertuples():
                box = self._control(self.inputs, r.pipe_job_id, self._box, "priority", self._changed)
                box.value = int(r.pipe_job_priority)
                box.description = f"pipe job {r.pipe_job_id}"
        self.rows.children = [
            w.HBox(
                [
                    self.inputs[r.pipe_job_id],
                    w.HTML(
                        f"request {r.request_id} · {r.pipe_name} {r.pipe_version} · order {r.pipe_order}"
                        f" · {r.jobs} job(s)"
                    ),
                ]
            )
            for r in open_pipes.itertuples()
        ]
        steps = figures.steps(self.poc).drop_duplicates("pipe_id")
        self.pipelines.options = [
            (f"{r.pipe_id}: {r.pipe_name} {r.pipe_version} (order {r.pipe_order})", int(r.pipe_id))
            for r in steps.itertuples()
        ]
        # wide enough for the longest option: a select cuts what does not fit
        self.pipelines.layout.width = option_width([label for label, _ in self.pipelines.options])
        self.request.value = int(pipes["request_id"].max() + 1) if len(pipes) else 1

    @staticmethod
    def _box() -> w.BoundedIntText:
        return w.BoundedIntText(min=-32768, max=32767, layout={"width": "140px"})

    def _changed(self, pipe_job_id: int, priority: int) -> None:
        waiting = self.queue.set_priority(pipe_job_id, priority)
        self.changed_jobs = waiting  # how many waiting jobs the last change re-prioritised
        self.message.value = f"pipe job {pipe_job_id}: priority {priority} ({waiting} waiting job(s))"

    def set_priority(self, pipe_job_id: int, priority: int) -> None:
        """Change one pipe job's priority, as typing in its box does."""
        if pipe_job_id not in self.inputs:
            raise PgQueueError(f"pipe job {pipe_job_id!r} is not open (finished, or unknown)")
        with self._flag("_by_code"):
            self.inputs[pipe_job_id].value = priority

    def _submit_clicked(self) -> None:
        if not self.pipelines.value:
            self.message.value = "choose at least one pipeline"
            return
        made = [
            self.queue.submit(pipe, self.request.value, self.priority.value) for pipe in self.pipelines.value
        ]
        if not self._by_code:
            chosen = {"pipelines": list(self.pipelines.value), "priority": self.priority.value}
            self.clicks.append(Click("submit", self.request.value, {**chosen, "pipe_jobs": made}))
        self.message.value = f"request {self.request.value}: pipe job(s) {made}"
        self.refresh()

    def submit(self, pipe_ids: list[int], request_id: int | None = None, priority: int = 100) -> None:
        """Fill the form and press Submit."""
        self.pipelines.value = tuple(pipe_ids)
        if request_id is not None:
            self.request.value = request_id
        self.priority.value = priority
        with self._flag("_by_code"):
            self.submit_button.click()


class FleetPanel(w.VBox):
    """Start N workers of a process (thread or process), stop them all, or hard-kill one."""

    def __init__(self, fleet: fleets.Fleet, worker_options=None) -> None:
        designs.get(fleet.poc).require("fleet")
        self.fleet, self.worker_options = fleet, worker_options
        found = labs.frame(fleet.poc, queries.load("clients/observe.sql")["processes"])
        self.process = w.Dropdown(
            description="process", options=[(f"{n} {v}", (n, v)) for n, v in found.itertuples(index=False)]
        )
        self.count = w.BoundedIntText(value=1, min=1, max=20, description="how many")
        self.mode = w.ToggleButtons(options=list(fleets.MODES), value="thread")
        self.start_button = _button("Start", "play", self._start_clicked, button_style="success")
        self.stop_button = _button("Stop all", "stop", self._stop_clicked, button_style="danger")
        self.victim = w.Dropdown(description="worker")
        self.kill_button = _button("Hard kill (SIGKILL)", "skull", self._kill_clicked)
        self.table = w.HTML()
        super().__init__(
            [
                w.HBox([self.process, self.count]),
                w.HBox([self.mode, self.start_button]),
                w.HBox([self.victim, self.kill_button, self.stop_button]),
                self.table,
            ]
        )
        self.refresh()

    def refresh(self) -> None:
        """Show the fleet's workers; offer its live process workers for a hard kill."""
        table = self.fleet.table()
        self.table.value = _table(table.drop(columns=["pid"]))
        self.victim.options = [m.who.uuid for m in self.fleet.members(alive=True) if m.mode == "process"]

    def _start_clicked(self) -> None:
        name, version = self.process.value
        self.fleet.start(
            name, version, self.count.value, mode=self.mode.value, worker_options=self.worker_options
        )
        self.refresh()

    def _stop_clicked(self) -> None:
        self.fleet.stop(timeout=10)
        self.refresh()

    def _kill_clicked(self) -> None:
        if self.victim.value:
            self.fleet.hard_kill(self.victim.value)
        self.refresh()

    def start(self, name: str, version: str, count: int = 1, mode: str = "thread") -> None:
        """Choose a process, a count and a mode, and press Start."""
        offered = [value for _, value in self.process.options]
        if (name, version) not in offered:
            raise PgQueueError(
                f"no pipeline asks for {name} {version}; the panel offers: "
                + ", ".join(f"{n} {v}" for n, v in offered)
            )
        self.process.value = (name, version)
        self.count.value, self.mode.value = count, mode
        self.start_button.click()

    def stop(self) -> None:
        """Press Stop all (kill switches first, force after a while)."""
        self.stop_button.click()

    def hard_kill(self, uuid: str) -> None:
        """Choose a process worker and press Hard kill."""
        self.refresh()
        self.victim.value = uuid
        self.kill_button.click()


TIMELINE_LAYOUT = {"height": 300, "title": "Who ran what, and when"}
PLOTLY_MIME = "application/vnd.plotly.v1+json"  # what JupyterLab's plotly extension draws


class Dashboard(w.VBox):
    """Counts, workers and a live timeline, refreshed by a background thread for `seconds` at most."""

    def __init__(self, poc: str, seconds: float = 60.0, interval: float = 0.5) -> None:
        self.poc = designs.get(poc).require("dashboard").name
        self.seconds, self.interval = seconds, interval
        self.counts, self.workers, self.status = w.HTML(), w.HTML(), w.HTML()
        # The timeline is drawn as a figure inside an Output widget, whole at each refresh: a
        # plotly FigureWidget sends its edits as one-shot messages, so a page view that started
        # after them (Restart Kernel and Run All, a second dashboard in the kernel) stayed blank.
        self.timeline = go.Figure(layout=TIMELINE_LAYOUT)  # the figure last drawn
        self.timeline_view = w.Output(layout={"min_height": f"{TIMELINE_LAYOUT['height']}px"})
        self._drawn = ""
        self.stop_button = _button("Stop refreshing", "stop", self.stop)
        self.refreshes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # a kernel that ends stops the thread too
        self._finalizer = weakref.finalize(self, self._stop.set)
        super().__init__(
            [w.HBox([self.stop_button, self.status]), self.counts, self.workers, self.timeline_view]
        )

    def refresh(self) -> None:
        """Read the lab once and update every part (widget values; the timeline drawn anew if it changed)."""
        counts = figures.counts_by_process(self.poc)
        self.counts.value = "<b>jobs by process</b>" + _table(counts)
        states = heartbeats.states(self.poc)
        self.workers.value = "<b>workers</b>" + _table(states.drop(columns=["server_name"]))
        fresh = figures.worker_timeline(self.poc)
        figure = go.Figure(fresh.data, layout=TIMELINE_LAYOUT)
        # the whole layout: a date axis (or the gate lines cannot be placed), shapes, title
        figure.update_layout(fresh.layout.to_plotly_json())
        self.timeline = figure
        drawn = figure.to_json()
        if drawn != self._drawn:  # an unchanged picture is not sent again (no flicker when idle)
            self._drawn = drawn
            bundle = {PLOTLY_MIME: {**json.loads(drawn), "config": {}}, "text/plain": "the worker timeline"}
            self.timeline_view.outputs = ({"output_type": "display_data", "data": bundle, "metadata": {}},)
        self.refreshes += 1

    def _loop(self) -> None:
        deadline = time.monotonic() + self.seconds
        while True:
            try:
                self.refresh()
                self.status.value = f"refreshed {self.refreshes} time(s)"
            except Exception as exc:  # shown in the panel: a background thread must not print
                self.status.value = f"refresh failed: {type(exc).__name__}: {exc}"
            # one refresh after the stop too: the last picture shows the run's end, not its
            # state up to one interval before
            if self._stop.is_set() or time.monotonic() >= deadline:
                break
            self._stop.wait(self.interval)
        self.status.value = f"stopped after {self.refreshes} refresh(es)"

    def start(self) -> Dashboard:
        """Refresh in the background until `stop()` or `seconds` have passed."""
        if self.running:
            return self
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="pgqueue dashboard", daemon=True)
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        """Whether the background thread still refreshes."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop refreshing (the thread ends within one interval)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def wait(self, timeout: float | None = None) -> None:
        """Block until the thread has stopped on its own (its time is up) or was stopped."""
        if self._thread is not None:
            self._thread.join(timeout)
