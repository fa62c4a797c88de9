# Solution: finishers of one request take turns at the gate. A BEFORE UPDATE trigger takes a
# transaction-level advisory lock on the request; the second finisher waits there until the
# first commits, and the gate's check (a new snapshot under READ COMMITTED) then sees it finished.
# One lock per request, asked for by everyone the same way: nobody holds half of what it needs.
from IPython.display import display

from pgqueue import check
from pgqueue.lab import races
from pgqueue.queues import labs

my_fix = """
CREATE FUNCTION pipe_job_takes_turn() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.pipe_job_finished AND NOT OLD.pipe_job_finished THEN
        PERFORM pg_advisory_xact_lock(hashtext('order gate'), NEW.request_id);
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER pipe_job_takes_turn
BEFORE UPDATE OF pipe_job_finished ON pipe_job_queue
FOR EACH ROW EXECUTE FUNCTION pipe_job_takes_turn();
"""
verdict = check.gate_takes_turns(my_fix)
print(verdict)
assert verdict.holds, verdict

# The same fix in the lesson's lab: rebuild it, install the kit's copy, run 100 trials.
labs.reset("single-call", examples=True)
display(labs.step("single-call", "order_gating").fix_sql)  # sql/single_call/07_order_gating.fix.sql
labs.apply("single-call", "order_gating", fixes=True)
fixed_trials = races.order_gate_trials(100)
print(fixed_trials)
assert fixed_trials.held and fixed_trials.deadlocks == 0
