"""Checkers for the SQL a learner writes in a lesson: each tries it on a scratch lab and says what holds.

    from pgqueue import check
    check.heartbeat_upsert(my_sql)   # lesson 02

Each returns a `Verdict` that a notebook shows in plain words; `verdict.holds` says whether
every check passed. The lesson's lab is never touched: a scratch copy is built and dropped.
"""

from pgqueue.check.core import Verdict
from pgqueue.check.heartbeats import heartbeat_upsert

__all__ = ["Verdict", "heartbeat_upsert"]
