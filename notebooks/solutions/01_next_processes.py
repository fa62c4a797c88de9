# Solution: the step after `p_process_name` is the step of the SAME pipeline whose
# process_order is one more. A self-join of pipeline_processes finds it; the join needs
# pipe_id on both sides, or a step of another pipeline with that order creeps in.
from pgqueue import check

my_next = """
CREATE FUNCTION next_processes(p_pipe_id integer, p_process_name varchar)
RETURNS SETOF pipeline_processes
LANGUAGE sql STABLE AS $$
    SELECT nxt.*
      FROM pipeline_processes this
      JOIN pipeline_processes nxt ON nxt.pipe_id = this.pipe_id
                                 AND nxt.process_order = this.process_order + 1
     WHERE this.pipe_id = p_pipe_id
       AND this.process_name = p_process_name;
$$;
"""
verdict = check.next_processes(my_next)
print(verdict)
assert verdict.holds, verdict
