"""A learner's prediction read back beside what was measured, part by part, and whether it matched."""

from __future__ import annotations

from collections.abc import Sequence

NO_GUESS = "no guess written (set my_guess in the cell above and run both again to compare)"


def read_back(guess: object, measured: object, *, within: float | None = None) -> str:
    """One line: the guess, what was measured, and which parts matched.

    A guess of several parts (a tuple or list) is compared part by part with `measured` of the
    same length. Words match whatever their case and spaces; numbers match exactly, or within a
    factor of `within` when given (a growth guessed as 10 matches 12.3 with within=2).
    """
    if guess is None:
        return f"{NO_GUESS}: it was {_shown(measured)}"
    guesses, values = _parts(guess), _parts(measured)
    if len(guesses) != len(values):
        return (
            f"you guessed {_shown(guess)}, but the question has {len(values)} part(s): "
            f"it was {_shown(measured)}"
        )
    hits = [_matches(g, v, within) for g, v in zip(guesses, values, strict=True)]
    if all(hits):
        verdict = "right" if len(hits) == 1 else "all right"
    elif len(hits) == 1:
        verdict = "not what happened: the next cell says why"
    else:
        verdict = f"{sum(hits)} of {len(hits)} right: the next cell says why"
    near = f" (a number within a factor of {within:g} counts)" if within is not None else ""
    return f"you guessed {_shown(guess)}; it was {_shown(measured)}: {verdict}{near}"


def _parts(value: object) -> Sequence[object]:
    return list(value) if isinstance(value, (tuple, list)) else [value]


def _matches(guess: object, value: object, within: float | None) -> bool:
    if isinstance(value, bool) or isinstance(guess, bool):
        return guess is value or (isinstance(guess, str) and _word(guess) == _word(str(value)))
    if isinstance(value, (int, float)) and isinstance(guess, (int, float)):
        if within is None:
            return guess == value
        return guess > 0 and value > 0 and max(guess, value) / min(guess, value) <= within
    return _word(str(guess)) == _word(str(value))


def _word(text: str) -> str:
    return " ".join(text.casefold().split())


def _shown(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, (tuple, list)):
        return "(" + ", ".join(_shown(v) for v in value) + ")"
    return repr(value) if isinstance(value, str) else str(value)
