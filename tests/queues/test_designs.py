"""The registry of designs: the one place a queue design is declared, read by everything else."""

import dataclasses

import pytest

from pgqueue import PgQueueError
from pgqueue.cli import build_parser
from pgqueue.queues import designs, labs
from pgqueue.ui import panels


def _poc_choices(parser) -> set[tuple[str, ...]]:
    found = set()
    for action in parser._actions:
        if "--poc" in action.option_strings:
            found.add(tuple(action.choices))
        for sub in getattr(action, "choices", None) or {}:
            if isinstance(action.choices, dict):
                found |= _poc_choices(action.choices[sub])
    return found


def test_a_design_added_to_the_registry_is_offered_everywhere(monkeypatch):
    extra = dataclasses.replace(designs.get("single-call"), name="single-call-2", folder="single_call_2")
    monkeypatch.setitem(designs.REGISTRY, extra.name, extra)
    assert _poc_choices(build_parser()) == {tuple(designs.names())}
    assert "single-call-2" in designs.names()
    assert labs.database("single-call-2") == labs.prefix() + "single_call_2"
    assert [f.name for f in extra.sql_folders()] == ["shared", "single_call_2"]


def test_the_registry_holds_only_designs_whose_sql_exists():
    for design in designs.REGISTRY.values():
        assert all(folder.is_dir() for folder in design.sql_folders()), design.name
        assert design.worker().Worker.poc == design.name


def test_a_panel_a_design_does_not_offer_is_refused_with_those_that_do():
    with pytest.raises(
        PgQueueError, match="lab 'notify-listen' has no priority; these do: single-call, hardened"
    ):
        panels.PriorityPanel("notify-listen")
    with pytest.raises(
        PgQueueError, match="unknown lab 'sturdy'; choose one of: notify-listen, single-call, hardened"
    ):
        designs.get("sturdy")


def test_a_design_naming_an_unknown_panel_is_refused():
    with pytest.raises(ValueError, match="unknown panels or figures: \\['gantt'\\]"):
        dataclasses.replace(designs.get("single-call"), figures=frozenset({"gantt"}))
