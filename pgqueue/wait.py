"""Waiting: for a condition, with a deadline (never sleeping and hoping); between retries, with backoff."""

import random
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class Timeout(AssertionError):
    """The condition did not hold before the deadline (an AssertionError, so tests read well)."""


def until(condition: Callable[[], T], timeout: float, what: str = "condition", interval: float = 0.05) -> T:
    """Call `condition` until it returns something truthy, and return that; Timeout after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise Timeout(f"{what} did not happen within {timeout:g} s (last value: {result!r})")
        time.sleep(interval)


def until_still(
    condition: Callable[[], object],
    progress: Callable[[], object],
    still: float,
    cap: float,
    interval: float = 0.2,
) -> bool:
    """Call `condition` until it is truthy (True), for as long as `progress` keeps changing: False once
    `progress` returned one value for `still` s, or after `cap` s in all. A wait for work to finish
    that lasts while the work moves, however slow the machine, and not long once it stopped."""
    began = moved = time.monotonic()
    last = progress()
    while not condition():
        now = time.monotonic()
        if now - moved >= still or now - began >= cap:
            return False
        time.sleep(interval)
        seen = progress()
        if seen != last:
            last, moved = seen, time.monotonic()
    return True


class Backoff:
    """Waits that double from `base` up to `cap`, each drawn between half and all of it (jitter).

    The jitter keeps workers that failed together from retrying together.
    """

    def __init__(self, base: float, cap: float) -> None:
        self.base, self.cap, self.tries = base, cap, 0

    def next(self) -> float:
        """The next wait, in seconds."""
        ceiling = min(self.cap, self.base * 2**self.tries)
        self.tries = min(self.tries + 1, 32)
        return random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        """Start again from `base` (after a success)."""
        self.tries = 0
