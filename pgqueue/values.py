"""Checks of the values a user gives (ids, counts, durations, ports, names): the value, or a one-line error.

The Python API and the command line share them: a function refuses a bad value with `BadValue`
before it touches the database, and the command line turns the same message into a usage line
and exit status 2.
"""

import math
import re
import unicodedata

from pgqueue.errors import PgQueueError

INT4_MAX = 2**31 - 1  # ids and counts are PostgreSQL integers
INT2_MIN, INT2_MAX = -(2**15), 2**15 - 1  # priorities are smallints
MAX_SECONDS = 86_400.0  # a day: a longer wait is a typo (and 1e308 overflows every timer)
_UUID = re.compile(r"[0-9a-f]{12}")


class BadValue(PgQueueError, ValueError):
    """A value the caller could have seen was wrong by reading it (the command line exits 2)."""


def whole(value, what: str, low: int = 1, high: int = INT4_MAX) -> int:
    """`value` as an int from `low` to `high` (a bool or a float is refused, '12' is read)."""
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise BadValue(f"{what} must be a whole number, got {value!r}") from None
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise BadValue(f"{what} must be a whole number from {low} to {high}, got {value!r}")
    return value


def seconds(value, what: str, *, zero_ok: bool = False) -> float:
    """`value` as a finite number of seconds, above 0 (or 0 too, where 0 means "none") and at most a day."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BadValue(f"{what} must be a number of seconds, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(number):
        raise BadValue(f"{what} must be a finite number of seconds, got {value!r}")
    low = "0" if zero_ok else "more than 0"
    if not (number >= 0 if zero_ok else number > 0) or number > MAX_SECONDS:
        raise BadValue(f"{what} must be {low} and at most {MAX_SECONDS:g} seconds, got {value!r}")
    return number


def chance(value, what: str) -> float:
    """`value` as a probability: a finite number from 0 to 1."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BadValue(f"{what} must be a chance from 0 to 1, got {value!r}") from None
    if isinstance(value, bool) or not 0 <= number <= 1:
        raise BadValue(f"{what} must be a chance from 0 to 1, got {value!r}")
    return number


def work_range(value, what: str = "work") -> tuple[float, float]:
    """A (min, max) range of seconds with 0 <= min <= max (0 0 means no work)."""
    try:
        low, high = value
    except (TypeError, ValueError):
        raise BadValue(f"{what} is (min, max) seconds, got {value!r}") from None
    low, high = seconds(low, f"{what} min", zero_ok=True), seconds(high, f"{what} max", zero_ok=True)
    if low > high:
        raise BadValue(f"{what} is (min, max) seconds with min <= max, got ({low:g}, {high:g})")
    return (low, high)


def port(value) -> int:
    """A TCP port, 1 to 65535."""
    return whole(value, "port", 1, 65_535)


def priority(value) -> int:
    """A priority: a smallint, lower runs first."""
    return whole(value, "priority", INT2_MIN, INT2_MAX)


def uuid(value) -> str:
    """A process uuid: 12 lowercase hex characters."""
    if not isinstance(value, str) or not _UUID.fullmatch(value):
        raise BadValue(f"a process uuid is 12 lowercase hex characters, got {value!r}")
    return value


def label(value, what: str, limit: int) -> str:
    """A printable name of 1 to `limit` characters (no tab, newline or other control character)."""
    if (
        not isinstance(value, str)
        or not value.strip()
        or len(value) > limit
        or any(unicodedata.category(char)[0] == "C" for char in value)
    ):
        raise BadValue(f"a process {what} is 1 to {limit} printable characters, got {value!r}")
    return value
