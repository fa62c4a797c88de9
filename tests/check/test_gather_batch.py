"""Lesson 06's checker beyond its corpus: the fan-out sizes it builds with, given or drawn."""

import pytest

from pgqueue import check
from pgqueue.queues import labs

REFERENCE = labs.step("single-call", "gather").lesson["gather_batch"]


@pytest.mark.parametrize("sizes", [[2, 7], [6, 3, 5]])
def test_the_fan_out_sizes_vary_and_are_said(sizes):
    verdict = check.gather_batch(REFERENCE, sizes=sizes)
    assert verdict.holds, str(verdict)
    assert len(verdict.held) == 17  # sixteen situations, and the fan-out sizes they were built with
    shown = sorted(sizes)
    assert f"the fan-outs had {', '.join(map(str, shown[:-1]))} and {shown[-1]} jobs" in str(verdict)


def test_a_size_that_is_no_fan_out_is_a_clear_error():
    with pytest.raises(ValueError, match="at least 2 jobs, got \\[1\\]"):
        check.gather_batch(REFERENCE, sizes=[1])
