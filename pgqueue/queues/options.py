"""Worker options (frozen dataclasses whose fields carry their own checks) and their command-line form."""

import argparse
import dataclasses
from collections.abc import Callable
from typing import Any

from pgqueue import values
from pgqueue.values import BadValue


def _option(default: Any, help_text: str, check: Callable[[Any, str], Any], metavar: str = "") -> Any:
    return dataclasses.field(
        default=default, metadata={"help": help_text, "check": check, "metavar": metavar}
    )


def seconds(default: float, help_text: str, *, zero_ok: bool = False) -> Any:
    """A duration option: finite, above 0 (or 0 too when `zero_ok`), at most a day."""
    return _option(default, help_text, lambda v, what: values.seconds(v, what, zero_ok=zero_ok))


def chance(default: float, help_text: str) -> Any:
    """A probability option, from 0 to 1."""
    return _option(default, help_text, values.chance, "CHANCE")


def work(default: tuple[float, float], help_text: str) -> Any:
    """A (min, max) range of simulated work, in seconds."""
    return _option(default, help_text, values.work_range)


def count(default: int, help_text: str, low: int, high: int) -> Any:
    """A whole-number option from `low` to `high`."""
    return _option(default, help_text, lambda v, what: values.whole(v, what, low, high))


def flag(default: bool, help_text: str) -> Any:
    """An on/off option (`--name` / `--no-name`)."""

    def check(value, what):
        if not isinstance(value, bool):
            raise BadValue(f"{what} is True or False, got {value!r}")
        return value

    return _option(default, help_text, check)


@dataclasses.dataclass(frozen=True)
class Checked:
    """The base of a worker's options (frozen dataclasses): each field checked on creation, kept checked."""

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            checked = field.metadata["check"](getattr(self, field.name), field.name.replace("_", "-"))
            object.__setattr__(self, field.name, checked)


def _flag(field: dataclasses.Field) -> str:
    return "--" + field.name.replace("_", "-")


def add_union(parser: argparse.ArgumentParser, options_types: dict[str, type]) -> None:
    """Options of several worker kinds on one parser; the values are checked by `chosen`."""
    seen: dict[str, list[str]] = {}
    fields: dict[str, dataclasses.Field] = {}
    for kind, options_type in options_types.items():
        for field in dataclasses.fields(options_type):
            seen.setdefault(field.name, []).append(kind)
            fields.setdefault(field.name, field)
    for name, field in fields.items():
        default = " ".join(map(str, field.default)) if isinstance(field.default, tuple) else field.default
        help_text = f"{field.metadata.get('help', '')} [{', '.join(seen[name])}; default {default}]"
        kwargs: dict[str, Any] = {"default": argparse.SUPPRESS, "help": help_text}
        if isinstance(field.default, bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        elif isinstance(field.default, tuple):
            kwargs.update(nargs=len(field.default), metavar=("MIN", "MAX"))
        else:
            kwargs["metavar"] = field.metadata.get("metavar") or (
                "SECONDS" if isinstance(field.default, float) else "N"
            )
        parser.add_argument(_flag(field), **kwargs)


def chosen(options_type: type, args: argparse.Namespace, known: set[str]) -> Any:
    """The options of `options_type` given on the command line (others keep their defaults).

    `known` holds every option name the parser has; one given that `options_type` lacks is an
    error, and so is a value its field's check refuses (both `BadValue`).
    """
    own = {field.name: field for field in dataclasses.fields(options_type)}
    given = {name: getattr(args, name) for name in known if hasattr(args, name)}
    stray = sorted(set(given) - set(own))
    if stray:
        flags = ", ".join("--" + name.replace("_", "-") for name in stray)
        raise BadValue(f"{flags} do(es) not apply to this kind of worker")
    typed = {name: tuple(v) if isinstance(own[name].default, tuple) else v for name, v in given.items()}
    return options_type(**typed)


def to_argv(options: Any) -> list[str]:
    """The command-line arguments that give a worker process these options."""
    argv: list[str] = []
    for field in dataclasses.fields(options):
        value = getattr(options, field.name)
        if isinstance(value, bool):
            argv.append(_flag(field) if value else "--no-" + _flag(field)[2:])
        elif isinstance(value, tuple):
            argv += [_flag(field), *map(repr, value)]
        else:
            argv += [_flag(field), repr(value)]
    return argv
