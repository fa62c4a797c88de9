# Solution: the jobs held by dead workers. A job is held when its assignee is set ('' means
# nobody too, in single-call) and it has not finished; its holder is dead when its last beat is
# older than the threshold, when it said it stopped, or when it has no heartbeat row at all (a LEFT
# JOIN keeps those). A kill switch alone does not make it dead: it still beats until it obeys.
from pgqueue import check
from pgqueue.lab import crash
from pgqueue.queues import labs

my_query = """
SELECT j.job_id, j.job_assigned_process_uuid, h.last_beat_timestamp
  FROM job_queue j
  LEFT JOIN process_heartbeats h ON h.process_uuid = j.job_assigned_process_uuid
 WHERE coalesce(j.job_assigned_process_uuid, '') <> ''
   AND j.job_finished IS NULL
   AND (h.process_uuid IS NULL
        OR h.process_stopped_timestamp IS NOT NULL
        OR h.last_beat_timestamp < clock_timestamp() - make_interval(secs => %(seconds)s))
 ORDER BY j.job_id
"""
verdict = check.dead_holders(my_query)
print(verdict)
assert verdict.holds, verdict

# The same query on a lab where a worker really died: the example run with its assigner killed.
measured = crash.kill_in_the_example()
print(measured)
dead = labs.frame("single-call", my_query, seconds=1)
print(dead)
assert dead["job_id"].tolist() == measured.held
