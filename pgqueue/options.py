"""Worker options (frozen dataclasses) and their command-line form, in both directions."""

import argparse
import dataclasses
from typing import Any

from pgqueue.errors import PgQueueError


def _flag(field: dataclasses.Field) -> str:
    return "--" + field.name.replace("_", "-")


def add_union(parser: argparse.ArgumentParser, options_types: dict[str, type]) -> None:
    """Options of several worker kinds on one parser; a flag given is checked by `chosen`."""
    seen: dict[str, list[str]] = {}
    fields: dict[str, dataclasses.Field] = {}
    for kind, options_type in options_types.items():
        for field in dataclasses.fields(options_type):
            seen.setdefault(field.name, []).append(kind)
            fields.setdefault(field.name, field)
    for name, field in fields.items():
        help_text = f"{field.metadata.get('help', '')} [{', '.join(seen[name])}; default {field.default}]"
        kwargs: dict[str, Any] = {"default": argparse.SUPPRESS, "help": help_text}
        if isinstance(field.default, bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        elif isinstance(field.default, tuple):
            kwargs.update(type=float, nargs=len(field.default), metavar=("MIN", "MAX"))
        else:
            kwargs["type"] = type(field.default)
        parser.add_argument(_flag(field), **kwargs)


def chosen(options_type: type, args: argparse.Namespace, known: set[str]) -> Any:
    """The options of `options_type` given on the command line (others keep their defaults).

    `known` holds every option name the parser has; one given that `options_type` lacks is an error.
    """
    own = {field.name: field for field in dataclasses.fields(options_type)}
    given = {name: getattr(args, name) for name in known if hasattr(args, name)}
    stray = sorted(set(given) - set(own))
    if stray:
        flags = ", ".join("--" + name.replace("_", "-") for name in stray)
        raise PgQueueError(f"{flags} do(es) not apply to this kind of worker")
    values = {name: tuple(v) if isinstance(own[name].default, tuple) else v for name, v in given.items()}
    return options_type(**values)


def to_argv(options: Any) -> list[str]:
    """The command-line arguments that give a worker process these options."""
    argv: list[str] = []
    for field in dataclasses.fields(options):
        value = getattr(options, field.name)
        if isinstance(value, bool):
            argv.append(_flag(field) if value else "--no-" + _flag(field)[2:])
        elif isinstance(value, tuple):
            argv += [_flag(field), *map(str, value)]
        else:
            argv += [_flag(field), str(value)]
    return argv


def check_seconds(options: Any, *names: str) -> None:
    """Refuse negative durations and a work range that is not (min, max) with 0 <= min <= max."""
    for name in names:
        value = getattr(options, name)
        if name == "work":
            low, high = value
            if not 0 <= low <= high:
                raise PgQueueError(f"work is (min, max) seconds with 0 <= min <= max, got {value!r}")
        elif value < 0:
            raise PgQueueError(f"{name} must be 0 or more seconds, got {value!r}")
