# Solution: the hardened gate takes turns on inserts as well as finishes. The gate reads the
# request's pipe jobs when one finishes (is every pipe job of this order done?) and when one is
# inserted (has the order below finished already?). Each side can miss the other's uncommitted
# row, so both take the same transaction-level lock per request first; the second waits for the
# first to commit, and then sees what it did. No condition on OLD: an INSERT has none.
from pgqueue import check

my_gate = """
CREATE FUNCTION pipe_job_takes_turn() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('order gate'), NEW.request_id);
    RETURN NEW;
END $$;

CREATE TRIGGER pipe_job_takes_turn
BEFORE INSERT OR UPDATE OF pipe_job_finished ON pipe_job_queue
FOR EACH ROW EXECUTE FUNCTION pipe_job_takes_turn();
"""
verdict = check.gate_takes_turns(my_gate, poc="hardened")
print(verdict)
assert verdict.holds, verdict
