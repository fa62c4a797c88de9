"""Each exercise solution that copies reference SQL still says what the reference in sql/ says.

A solution is the answer a learner sees with `%load`, so it holds its SQL as text rather than
reading it from sql/; this keeps each copy honest. Comments, spacing, `OR REPLACE` and a trigger
created after the function aside, the solution's statement is a routine (`CREATE ... name`) or a
named query (`-- name:`) of some file in sql/. The solutions listed in OWN have no reference there:
they are the only written answer, and their judge decides by behaviour.
"""

import ast
import functools
import re
from pathlib import Path

import pytest

from pgqueue import queries
from pgqueue.paths import NOTEBOOKS_DIR
from pgqueue.queues import schema
from tests.conftest import REPO

SOLUTIONS = NOTEBOOKS_DIR / "solutions"
OWN = {
    "01_next_processes.py",  # the lesson asks for a function the design does not have
    "09_dead_holders.py",  # lessons 09, 11 and 13 ask for a query the kit runs no copy of
    "11_archive_finished.py",
    "13_turn_through_pool.py",
}
_ROUTINE = re.compile(r"^CREATE (?:OR REPLACE )?(?:FUNCTION|VIEW|PROCEDURE) (\w+)", re.M | re.I)


def _same(text: str) -> str:
    """`text` as compared: no comments, no `OR REPLACE`, one space between words, no final `;`."""
    text = re.sub(r"--[^\n]*", "", text)
    text = re.sub(r"\bOR REPLACE\b", "", text, flags=re.IGNORECASE)
    return " ".join(text.split()).rstrip(";").strip()


@functools.cache
def _references() -> dict[str, list[str]]:
    """Every routine and named query of sql/, as compared -> where it stands."""
    found: dict[str, list[str]] = {}
    for path in sorted((REPO / "sql").rglob("*.sql")):
        where = path.relative_to(REPO)
        for name, text in queries.Queries(path).items():
            found.setdefault(_same(text), []).append(f"{where}: {name}")
        for name in _ROUTINE.findall(path.read_text(encoding="utf-8")):
            found.setdefault(_same(schema.excerpt(path, name)), []).append(f"{where}: {name}")
    return found


def _answer(path: Path) -> str | None:
    """The SQL a solution gives the exercise (the first SQL string it assigns), up to the end of its
    first statement when that is a function (a trigger on it may follow)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            text = node.value.value
            if isinstance(text, str) and re.search(r"\b(SELECT|CREATE|UPDATE|WITH)\b", text):
                return text.split("$$;")[0] + "$$" if "$$;" in text else text
    return None


ANSWERS = {path.name: answer for path in sorted(SOLUTIONS.glob("*.py")) if (answer := _answer(path))}


def test_the_answers_are_found_in_the_solutions():
    assert set(ANSWERS) >= OWN and len(ANSWERS) >= 15, sorted(ANSWERS)


@pytest.mark.parametrize("name", sorted(set(ANSWERS) - OWN))
def test_a_solution_copies_its_reference_as_it_stands(name):
    assert _same(ANSWERS[name]) in _references(), (
        f"notebooks/solutions/{name} no longer matches any routine or named query of sql/: "
        "change the copy with its reference (or list it in OWN if the reference went)"
    )


@pytest.mark.parametrize("name", sorted(OWN))
def test_a_solution_of_its_own_has_no_reference_to_follow(name):
    assert _same(ANSWERS[name]) not in _references(), _references()[_same(ANSWERS[name])]
