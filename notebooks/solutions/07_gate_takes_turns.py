# Solution: finishers of one request take turns at the gate. A BEFORE UPDATE trigger takes a
# transaction-level advisory lock on the request; the second finisher waits there until the
# first commits, and the gate's check (a new snapshot under READ COMMITTED) then sees it finished.
from IPython.display import display

from pgqueue import labs, races

labs.reset("single-call", examples=True)
display(labs.step("single-call", "order_gating").fix_sql)  # sql/single_call/07_order_gating.fix.sql
labs.apply("single-call", "order_gating", fixes=True)
trials = races.order_gate_trials(100)
print(trials)
assert trials.held and trials.deadlocks == 0
