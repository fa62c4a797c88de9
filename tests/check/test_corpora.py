"""Every judge against its corpus: each wrong answer is refused with what is wrong, each right one holds."""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

import pytest

from pgqueue import server
from tests import corpora
from tests.tools import require

# one corpus per judge a lesson calls: lessons 01-13 and the capstone
JUDGES = [
    "l01_next_processes",
    "l02_heartbeat_upsert",
    "l03_heartbeat_answer",
    "l04_find_job_pick",
    "l05_priority_change",
    "l06_gather_batch",
    "l07_gate_takes_turns",
    "l08_request_flow",
    "l09_dead_holders",
    "l10_skip_locked_claim",
    "l11_archive_finished",
    "l12_claim_jobs",
    "l12_rescue_jobs",
    "l12_hold_jobs",
    "l12_gate_takes_turns",
    "l12_capstone",
    "l13_turn_through_pool",
]
LEAST_WRONG, LEAST_RIGHT = 8, 3


def _modules() -> dict[str, ModuleType]:
    names = [m.name for m in pkgutil.iter_modules(corpora.__path__)]
    return {name: importlib.import_module(f"tests.corpora.{name}") for name in sorted(names)}


MODULES = _modules()


def _cases(kind: str) -> list:
    return [
        pytest.param(
            module,
            answer,
            id=f"{name}:{answer.mistake if kind == 'WRONG' else answer.style}",
            marks=getattr(module, "MARKS", ()),
        )
        for name, module in MODULES.items()
        for answer in getattr(module, kind)
    ]


def judge(module: ModuleType, answer: object):
    if hasattr(module, "NEEDS"):
        require(*module.NEEDS)
    return module.JUDGE(answer)


@pytest.mark.parametrize(("module", "wrong"), _cases("WRONG"))
def test_a_wrong_answer_is_refused_saying_what_is_wrong(module, wrong):
    if wrong.since and int(server.version().split(".")[0]) < wrong.since:
        pytest.skip(f"{wrong.mistake} shows on PostgreSQL {wrong.since} and later, not {server.version()}")
    verdict = judge(module, wrong.answer)
    assert not verdict.holds, f"{wrong.mistake} was accepted:\n{verdict}"
    assert any(wrong.says in line for line in verdict.wrong), f"{wrong.mistake} refused otherwise:\n{verdict}"
    assert all(part in str(verdict) for part in wrong.also), f"{wrong.mistake} refused otherwise:\n{verdict}"


@pytest.mark.parametrize(("module", "right"), _cases("RIGHT"))
def test_a_right_answer_in_another_style_holds(module, right):
    verdict = judge(module, right.answer)
    assert verdict.holds, f"{right.style} was refused:\n{verdict}"


@pytest.mark.parametrize("name", JUDGES)
def test_every_judge_has_a_corpus_of_its_own(name):
    module = MODULES.get(name)
    if module is None:
        pytest.fail(f"no corpus tests/corpora/{name}.py")
    mistakes = [w.mistake for w in module.WRONG]
    styles = [r.style for r in module.RIGHT]
    assert len(mistakes) >= LEAST_WRONG and len(styles) >= LEAST_RIGHT, (len(mistakes), len(styles))
    assert len(set(mistakes)) == len(mistakes) and len(set(styles)) == len(styles), "names repeat"
    assert set(MODULES) <= set(JUDGES), set(MODULES) - set(JUDGES)
