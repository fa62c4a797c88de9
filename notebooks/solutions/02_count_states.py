# Solution: count instances per process and state with FILTER.
from pgqueue.queues import heartbeats, labs
from pgqueue.queues.heartbeats import Identity

labs.reset("notify-listen", upto="heartbeats", examples=True)
with labs.connect("notify-listen") as conn:
    for _ in range(2):
        heartbeats.send_heartbeat(conn, Identity.new("first_process", "1.0.0"))
    killed, quitter = Identity.new("second_process", "1.5.2"), Identity.new("second_process", "1.5.2")
    heartbeats.send_heartbeat(conn, killed)
    heartbeats.send_heartbeat(conn, quitter)
    heartbeats.mark_stopped(conn, quitter.uuid)
heartbeats.set_kill_switch("notify-listen", killed.uuid)

counts = labs.frame("notify-listen", """
    SELECT process_name, process_version,
           count(*) FILTER (WHERE state = 'alive')  AS alive,
           count(*) FILTER (WHERE state = 'stale')  AS stale,
           count(*) FILTER (WHERE state = 'stopped') AS stopped,
           count(*) FILTER (WHERE state = 'killed') AS killed
      FROM process_states(interval '10 seconds')
     GROUP BY process_name, process_version
     ORDER BY process_name
""")
print(counts)
assert counts[["alive", "stale", "stopped", "killed"]].values.tolist() == [[2, 0, 0, 0], [0, 0, 1, 1]]
