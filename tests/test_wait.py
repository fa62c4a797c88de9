"""pgqueue.wait.until_still: a wait that lasts while the work moves, and ends soon after it stops."""

import itertools
import time

from pgqueue.wait import until_still


def test_it_ends_true_once_the_condition_holds():
    calls = itertools.count()
    assert until_still(lambda: next(calls) >= 3, lambda: 0, still=5.0, cap=5.0, interval=0.01)


def test_it_waits_past_the_still_window_while_progress_keeps_changing():
    began = time.monotonic()
    moving = itertools.count()  # a new value at each look: the work still moves

    def finished() -> bool:
        return time.monotonic() - began > 0.6

    assert until_still(finished, lambda: next(moving), still=0.2, cap=5.0, interval=0.02)
    assert time.monotonic() - began > 0.6


def test_it_gives_up_once_progress_stands_still():
    began = time.monotonic()
    assert not until_still(lambda: False, lambda: "stuck", still=0.3, cap=30.0, interval=0.02)
    assert 0.3 <= time.monotonic() - began < 5.0


def test_it_gives_up_at_the_cap_however_much_moves():
    began = time.monotonic()
    moving = itertools.count()
    assert not until_still(lambda: False, lambda: next(moving), still=10.0, cap=0.4, interval=0.02)
    assert 0.4 <= time.monotonic() - began < 5.0
