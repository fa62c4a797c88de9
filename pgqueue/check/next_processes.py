"""Lesson 01's checker: the learner's `next_processes`, asked for the step after every step there is."""

from __future__ import annotations

import re
import secrets

import psycopg
from psycopg.rows import dict_row

from pgqueue.check.core import Refused, Verdict, checker, checks, said
from pgqueue.queues import labs

SIGNATURE = "next_processes(p_pipe_id integer, p_process_name varchar) RETURNS SETOF pipeline_processes"


@checker(
    "your next_processes",
    "notify-listen",
    "pipelines",
    examples=True,
    replaces=["next_processes"],
    before=lambda conn: conn.execute(checks()["check_time_limit"]),
)
def next_processes(
    verdict: Verdict, lab: labs.Scratch, conn: psycopg.Connection, text: str, poc: str
) -> None:
    """Whether the learner's `next_processes` names the next step of every step of the pipelines.

    The reference answer is the step of the same pipeline whose process_order is one more, or
    none after a pipeline's last step and before a gap in its orders (the original's create_jobs
    asked for process_order + 1 and raised without it); the first difference is named in plain words.
    """
    result = conn.execute(checks()["next_processes_result"]).fetchone()
    if not verdict.expect(
        result[1],
        "it returns SETOF pipeline_processes: whole rows, so a job can carry its step's configuration",
        f"your next_processes returns {result[0]}; the task asks for {SIGNATURE}",
    ):
        return
    drawn = _draw(conn)
    with conn.cursor(row_factory=dict_row) as cur:
        steps = cur.execute(checks()["next_step_reference"]).fetchall()
    answers = [(step, _ask(conn, step["pipe_id"], step["process_name"])) for step in steps]
    # asked about a process that is no step of the pipeline: no step, so no next step
    strangers = [(1, drawn.stranger), (drawn.pipe_id, "first_process"), (drawn.pipe_id + 1, drawn.first)]
    asked_stray = [(pipe_id, name, _ask(conn, pipe_id, name)) for pipe_id, name in strangers]
    after = {
        (step["pipe_id"], step["process_name"]): (step["next_name"], step["next_version"])
        for step in steps
        if step["next_name"] is not None
    }
    # a pipeline without the step asked about answered with the step after it in another:
    # what the name found was not kept to the pipeline asked about
    unkept = any(_elsewhere(after, pipe_id, name, answer) for pipe_id, name, answer in asked_stray)
    scene = _Scene(steps, after if unkept else {})
    scene.from_every_step = any(scene.starts_from_every_step(step, answer) for step, answer in answers)
    wrong: list[str] = []
    for step, answer in answers:
        expected = [] if step["next_name"] is None else [(step["next_name"], step["next_version"])]
        if [(row["process_name"], row["process_version"]) for row in answer] != expected:
            wrong.append(_difference(step, answer, scene))
    verdict.expect(
        not wrong,
        f"it names the next step of each of the {len(steps)} steps of the example pipelines and of "
        f"pipeline {drawn.pipe_id} ({drawn.size} steps at orders {drawn.orders_said}, drawn for this "
        "check), no step after a pipeline's last one, and none across the gap in its orders",
        f"it is wrong for {len(wrong)} of the {len(steps)} steps asked about; the first: {wrong[0]}"
        if wrong
        else "",
    )
    strays = [
        f"after `{name}` in pipeline {pipe_id} you answered {_names(answer)}, but pipeline "
        f"{pipe_id} has no step `{name}`: the answer should be no row"
        + _elsewhere_said(after, pipe_id, name, answer)
        for pipe_id, name, answer in asked_stray
        if answer
    ]
    verdict.expect(
        not strays,
        "it answers no row for a process that is not a step of the pipeline asked about",
        strays[0] if strays else "",
    )


class _Drawn:
    """The pipeline drawn for one check, and the names it asks about that are no step."""

    def __init__(self, pipe_id: int, tag: str, names: list[str], orders: list[int]) -> None:
        self.pipe_id, self.size, self.first = pipe_id, len(names), names[0]
        self.orders_said = ", ".join(map(str, orders))
        self.stranger = f"no_such_{tag}"  # a step of no pipeline


def _draw(conn: psycopg.Connection) -> _Drawn:
    """Add a pipeline of 4 to 6 steps with a drawn id, names and versions; its last step is
    second_process, at another order than in the examples, so a step found in the wrong pipeline shows.

    One order after a drawn step past the second is missing (1, 2, 4, ... or 1, 2, 3, 5, ...): the
    examples have no gap, so an answer that takes the least later order instead of process_order + 1
    would pass them. Order 2 is always there, beside the examples' step 2 of the same order. Two
    steps at least follow the gap, so one step's answer is at order 5 or later: the examples end at
    order 3, and an answer that keeps to their orders (process_order <= 3) fails. A later step's
    name is the first's but for case and a letter where the first has '_': a name matched with
    ILIKE finds both."""
    pipe_id, tag = 10 + secrets.randbelow(80), secrets.token_hex(2)
    size = 4 + secrets.randbelow(3)
    names = [f"step_{tag}_{chr(ord('a') + i)}" for i in range(size - 1)] + ["second_process"]
    before_gap = 2 + secrets.randbelow(size - 3)
    orders = [n if n <= before_gap else n + 1 for n in range(1, size + 1)]
    # a step whose name the first's matches as a LIKE pattern, case aside ('_' is any one character),
    # past order 2 (which the examples share), with a step after it, so that a name matched so finds that step
    alike = secrets.choice([i for i in range(2, size - 1) if orders[i] + 1 == orders[i + 1]])
    names[alike] = f"STEPx{tag.upper()}_A"
    versions = [f"{secrets.randbelow(9)}.{secrets.randbelow(9)}.{i}" for i in range(size)]
    conn.execute(checks()["next_drawn_pipeline"], {"pipe_id": pipe_id, "pipe_name": f"drawn_{tag}"})
    params = {"pipe_id": pipe_id, "names": names, "versions": versions, "orders": orders}
    conn.execute(checks()["next_drawn_steps"], params)
    return _Drawn(pipe_id, tag, names, orders)


class _Scene:
    """What the hints need to know of every step: the orders each pipeline has, and their names."""

    def __init__(self, steps: list[dict], after: dict) -> None:
        # `after` maps each step to the one after it, when the answer was seen not to keep to the
        # pipeline asked about (else it is empty)
        self.after, self.from_every_step = after, False
        self.orders: dict[int, dict[int, str]] = {}
        for step in steps:
            self.orders.setdefault(step["pipe_id"], {})[step["process_order"]] = step["process_name"]

    def starts_from_every_step(self, step: dict, answer: list[dict]) -> bool:
        """Whether the answer is the step after every step of the pipeline, the one asked before it too."""
        orders = self.orders.get(step["pipe_id"], {})
        mine = {row["process_order"] for row in answer if row["pipe_id"] == step["pipe_id"]}
        return (
            len(mine) > 1
            and min(mine) <= step["process_order"]
            and mine == {order for order in orders if order - 1 in orders}
            and not self.after_the_name_elsewhere(step, answer)
        )

    def after_the_name_elsewhere(self, step: dict, answer: list[dict]) -> tuple[dict, int, int] | None:
        """A row of the pipeline asked that is one after a step of the same name in another pipeline,
        when every wrong row of that pipeline is such a row; else None."""
        strays = [
            row
            for row in answer
            if row["pipe_id"] == step["pipe_id"] and row["process_order"] != step["process_order"] + 1
        ]
        found = [self._one_after_the_name(step, row) for row in strays]
        return found[0] if strays and all(found) else None

    def _one_after_the_name(self, step: dict, row: dict) -> tuple[dict, int, int] | None:
        """The row, with the other pipeline whose step of the name asked it is one after; else None."""
        for pipe_id, orders in self.orders.items():
            if pipe_id != step["pipe_id"] and orders.get(row["process_order"] - 1) == step["process_name"]:
                return row, pipe_id, row["process_order"] - 1
        return None


def _ask(conn: psycopg.Connection, pipe_id: int, name: str) -> list[dict]:
    """The learner's answer for one step; Refused, saying why, if the call failed."""
    try:
        with conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(checks()["next_processes_call"], {"pipe_id": pipe_id, "name": name}).fetchall()
    except psycopg.Error as exc:
        # an error the function raised itself is no matter of its signature
        hint = (
            "a step with no step after it (a pipeline's last, one before a gap in its orders, or no step of "
            "that pipeline at all) is answered with no row, not an error"
            if exc.sqlstate and exc.sqlstate.startswith("P0")
            else f"the task's signature is {SIGNATURE}"
        )
        raise Refused(f"next_processes({pipe_id}, '{name}') failed: {said(exc)} ({hint})") from exc


def _names(rows: list[dict]) -> str:
    """The processes answered, in plain words: 'no row', 'x', or 'x and y'."""
    if not rows:
        return "no row"
    names = [
        "a row of NULLs"
        if row["process_name"] is None
        else f"{row['process_name']} (step {row['process_order']} of pipeline {row['pipe_id']})"
        for row in rows
    ]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


_UNKEPT = (
    ": your answer does not keep to the pipeline asked about (the function's pipeline argument,"
    " p_pipe_id), only to the process named"
)


def _elsewhere(after: dict, pipe_id: int, name: str, answer: list[dict]) -> list[dict]:
    """The answer's rows of other pipelines when each is the step after `name` in its own, else []."""
    foreign = [row for row in answer if row["pipe_id"] != pipe_id]
    kept = all(
        after.get((row["pipe_id"], name)) == (row["process_name"], row["process_version"]) for row in foreign
    )
    return foreign if kept else []


def _elsewhere_said(after: dict, pipe_id: int, name: str, answer: list[dict]) -> str:
    """'; x is the step after `name` in its own pipeline...' when `_elsewhere` finds rows, else ''."""
    foreign = _elsewhere(after, pipe_id, name, answer)
    if not foreign:
        return ""
    one = len(foreign) == 1
    return (
        f"; {_names(foreign)} {'is' if one else 'are'} the step after `{name}` in {'its' if one else 'their'}"
        f" own pipeline, not in pipeline {pipe_id}{_UNKEPT}"
    )


def _difference(step: dict, answer: list[dict], scene: _Scene) -> str:
    """One wrong answer in plain words, with a hint at the likely cause."""
    pipe_id, name = step["pipe_id"], step["process_name"]
    where = f"after `{name}` in pipeline {pipe_id} you answered {_names(answer)}"
    elsewhere = _elsewhere_said(scene.after, pipe_id, name, answer)
    if any(row["process_name"] is None for row in answer):
        return (
            f"{where}: a row whose columns are all NULL is no step (an outer join keeps a step with "
            "nothing after it; use JOIN, so that no step after it is no row)"
        )
    if step["next_name"] is None and step["later_order"] is not None:
        return (
            f"{where}; pipeline {step['pipe_id']} has no step at process_order {step['process_order'] + 1} "
            f"(its orders jump from {step['process_order']} to {step['later_order']}), so the answer is no "
            "row: the next step is the one whose process_order is one more, not the next one found later"
            + elsewhere
        )
    if step["next_name"] is None:
        return f"{where}; it is the pipeline's last step, so the answer is no row{elsewhere}"
    said = f"{where}; the next step is {step['next_name']}"
    if elsewhere:
        return f"{said}{elsewhere}"
    stray = scene.after_the_name_elsewhere(step, answer)
    if stray:
        row, other, order = stray
        return (
            f"{said}: {_names([row])} is one after `{name}` in pipeline {other} (its step {order}), not "
            f"in pipeline {pipe_id}: the step you start from (`{name}`) is not kept to p_pipe_id"
        )
    if scene.from_every_step:
        return (
            f"{said}: your answer is the step after every step of pipeline {pipe_id}, not only after "
            f"`{name}`: the step you start from must be of pipeline p_pipe_id and named p_process_name, "
            "both (is one of them left out, or joined by OR?)"
        )
    foreign = [row for row in answer if row["pipe_id"] != pipe_id]
    if foreign and any(row["process_order"] != step["process_order"] + 1 for row in answer):
        return (
            f"{said}: steps of other pipelines and other orders crept in: a row of the next step must be "
            "of the same pipeline and at process_order + 1, both (AND, not OR)"
        )
    if foreign:
        return f"{said}: a step of another pipeline crept in (match pipe_id too)"
    if any(row["process_order"] <= step["process_order"] for row in answer):
        return f"{said}: your answer does not come after it (process_order {step['process_order']} + 1)"
    if any(
        (before := scene.orders.get(pipe_id, {}).get(row["process_order"] - 1)) not in (None, name)
        and _like(name, before)
        for row in answer
    ):
        return (
            f"{said}: a step whose name only looks like `{name}` matched too: compare names with =, not "
            "LIKE or ILIKE ('_' and '%' are wildcards there, and ILIKE ignores case)"
        )
    if len(answer) > 1:
        return f"{said}: only the step one after it, not every later step"
    return said


def _like(pattern: str, name: str) -> bool:
    """Whether `name` matches `pattern` as ILIKE matches it ('_' any one character, '%' any run)."""
    parts = ("." if c == "_" else ".*" if c == "%" else re.escape(c) for c in pattern)
    return re.fullmatch("".join(parts), name, re.IGNORECASE | re.DOTALL) is not None
