"""Checkers for the SQL a learner writes in a lesson: each tries it on a scratch lab and says what holds.

    from pgqueue import check
    check.next_processes(my_sql)     # lesson 01
    check.heartbeat_upsert(my_sql)   # lesson 02
    check.heartbeat_answer(my_sql)   # lesson 03
    check.find_job_pick(my_sql)      # lesson 04
    check.priority_change(my_sql)    # lesson 05
    check.gather_batch(my_sql)       # lesson 06
    check.gate_takes_turns(my_sql)   # lesson 07
    check.request_flow(my_query)     # lesson 08
    check.dead_holders(my_query)     # lesson 09
    check.skip_locked_claim(my_claim)  # lesson 10
    check.archive_finished(my_archive)  # lesson 11
    check.claim_jobs(my_claim)       # lesson 12, the hardened lab
    check.rescue_jobs(my_rescue)     # lesson 12
    check.hold_jobs(my_hold)         # lesson 12
    check.gate_takes_turns(my_gate, poc="hardened")  # lesson 12
    check.capstone(yours)            # lesson 12, a chaos round on your four pieces
    check.turn_through_pool(my_turn)  # lesson 13

Each returns a `Verdict` that a notebook shows in plain words; `verdict.holds` says whether
every check passed. The lesson's lab is never touched: a scratch copy is built and dropped.
"""

from pgqueue.check.archive_finished import archive_finished
from pgqueue.check.capstone import capstone
from pgqueue.check.claim_jobs import claim_jobs
from pgqueue.check.core import Verdict
from pgqueue.check.dead_holders import dead_holders
from pgqueue.check.find_job_pick import find_job_pick
from pgqueue.check.gate_takes_turns import gate_takes_turns
from pgqueue.check.gather_batch import gather_batch
from pgqueue.check.heartbeat_answer import heartbeat_answer
from pgqueue.check.heartbeat_upsert import heartbeat_upsert
from pgqueue.check.hold_jobs import hold_jobs
from pgqueue.check.next_processes import next_processes
from pgqueue.check.priority_change import priority_change
from pgqueue.check.request_flow import request_flow
from pgqueue.check.rescue_jobs import rescue_jobs
from pgqueue.check.skip_locked_claim import skip_locked_claim
from pgqueue.check.turn_through_pool import turn_through_pool

__all__ = [
    "Verdict",
    "archive_finished",
    "capstone",
    "claim_jobs",
    "dead_holders",
    "find_job_pick",
    "gate_takes_turns",
    "gather_batch",
    "heartbeat_answer",
    "heartbeat_upsert",
    "hold_jobs",
    "next_processes",
    "priority_change",
    "request_flow",
    "rescue_jobs",
    "skip_locked_claim",
    "turn_through_pool",
]
