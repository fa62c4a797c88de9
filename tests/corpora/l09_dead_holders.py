"""Lesson 09's query for the jobs held by dead workers: silent past %(seconds)s, stopped, or never beating."""

from pgqueue import check
from tests.corpora import Right, Wrong, variant

JUDGE = check.dead_holders

HELD = "coalesce(j.job_assigned_process_uuid, '') <> ''"
UNFINISHED = "j.job_finished IS NULL"
STALE = "h.last_beat_timestamp < clock_timestamp() - make_interval(secs => %(seconds)s)"
DEAD = f"(h.process_uuid IS NULL OR h.process_stopped_timestamp IS NOT NULL OR {STALE})"
JOIN = "LEFT JOIN process_heartbeats h ON h.process_uuid = j.job_assigned_process_uuid"


def dead_holders(held: str = HELD, unfinished: str = UNFINISHED, dead: str = DEAD, join: str = JOIN) -> str:
    """The reference query, with one of its parts written otherwise."""
    return f"""
SELECT j.job_id, j.job_assigned_process_uuid, h.last_beat_timestamp
  FROM job_queue j
  {join}
 WHERE {held}
   AND {unfinished}
   AND {dead}
 ORDER BY j.job_id
"""


WRONG = [
    Wrong(
        "positional-placeholder",
        dead_holders(dead=variant(DEAD, "%(seconds)s", "%s")),
        "psycopg could not send your SQL",
    ),
    Wrong(
        "unfilled-skeleton",
        "SELECT j.job_id\n  FROM job_queue j\n WHERE TODO\n",
        says='PostgreSQL refused your query: column "todo" does not exist',
    ),
    Wrong(
        "inner-join-drops-silent-holders",
        dead_holders(join=variant(JOIN, "LEFT JOIN", "JOIN")),
        says="no heartbeat row at all (at ",
    ),
    # a LEFT JOIN, but a missing heartbeat is not counted as dead: told what an inner JOIN is told
    Wrong(
        "left-join-missing-beat-not-dead",
        dead_holders(dead=variant(DEAD, "h.process_uuid IS NULL OR ", "")),
        says="such a holder is dead too; keep its job with a LEFT JOIN and count h.process_uuid IS NULL",
    ),
    Wrong(
        "hard-coded-ten-seconds",
        dead_holders(dead=variant(DEAD, "make_interval(secs => %(seconds)s)", "interval '10 seconds'")),
        says="at both it counts as dead the workers silent for longer than somewhere between",
    ),
    Wrong(
        "beat-compared-with-now",
        dead_holders(
            dead=variant(DEAD, "< clock_timestamp() - make_interval(secs => %(seconds)s)", "< now()")
        ),
        says="at both it counts as dead every worker that beats, however recently",
    ),
    Wrong(
        "minutes-for-seconds",
        dead_holders(dead=variant(DEAD, "secs =>", "mins =>")),
        says="it reads %(seconds)s as minutes, not seconds: at ",
    ),
    Wrong(
        "seconds-times-a-minute",
        dead_holders(
            dead=variant(DEAD, "make_interval(secs => %(seconds)s)", "interval '1 minute' * %(seconds)s")
        ),
        says="it reads %(seconds)s as minutes, not seconds: at ",
    ),
    Wrong(
        "beat-compared-the-wrong-way",
        dead_holders(dead=variant(DEAD, "h.last_beat_timestamp <", "h.last_beat_timestamp >")),
        says="it compares the wrong way round: it lists the jobs of workers that beat since the threshold",
    ),
    # the same mistake in another style: "no stale beat" where "no live beat" was meant
    Wrong(
        "not-exists-a-stale-beat",
        """
SELECT job_id FROM job_queue j
 WHERE j.job_assigned_process_uuid <> '' AND j.job_finished IS NULL
   AND NOT EXISTS (SELECT 1 FROM process_heartbeats h
                    WHERE h.process_uuid = j.job_assigned_process_uuid
                      AND h.process_stopped_timestamp IS NULL
                      AND h.last_beat_timestamp < clock_timestamp() - %(seconds)s * interval '1 second')
""",
        says="it compares the wrong way round: it lists the jobs of workers that beat since the threshold",
    ),
    Wrong(
        "job-age-instead-of-beat-age",
        dead_holders(dead=variant(DEAD, "h.last_beat_timestamp", "j.job_assign_timestamp")),
        says="it goes by how long ago a job was handed out, not by its worker's last beat",
    ),
    Wrong(
        "null-only-means-nobody",
        dead_holders(held="j.job_assigned_process_uuid IS NOT NULL"),
        says="in single-call '' also means nobody",
    ),
    Wrong("finished-jobs-kept", dead_holders(unfinished="true"), says="finished before its worker died"),
    Wrong(
        "not-finished-drops-null",
        dead_holders(unfinished="NOT j.job_finished"),
        says="it lists no job at either threshold, where ",
    ),
    Wrong(
        "stopped-worker-ignored",
        dead_holders(dead=f"(h.process_uuid IS NULL OR {STALE})"),
        says="said it stopped",
    ),
    Wrong(
        "kill-switch-means-dead",
        dead_holders(
            dead=variant(DEAD, "h.process_uuid IS NULL", "h.process_uuid IS NULL OR h.process_kill_switch")
        ),
        says="a kill switch asks a worker to exit; it is dead when its last beat is older than",
    ),
    # process_states() says 'killed' before 'stale': a killed worker that then died is missed
    Wrong(
        "process-states-killed-hides-stale",
        """
SELECT j.job_id FROM job_queue j
  LEFT JOIN process_states(make_interval(secs => %(seconds)s)) s
         ON s.process_uuid = j.job_assigned_process_uuid
 WHERE coalesce(j.job_assigned_process_uuid, '') <> '' AND j.job_finished IS NULL
   AND (s.process_uuid IS NULL OR s.state IN ('stale', 'stopped'))
""",
        says="a kill switch asks a worker to exit; it is dead when its last beat is older than",
    ),
    Wrong(
        "joined-on-process-name",
        dead_holders(join="LEFT JOIN process_heartbeats h ON h.process_name = j.job_process_name"),
        says="it lists a job twice",
    ),
]

RIGHT = [
    Right("left-join-reference", dead_holders()),
    Right(
        "not-exists-a-live-beat",
        """
SELECT job_id FROM job_queue j
 WHERE j.job_assigned_process_uuid <> '' AND j.job_finished IS NOT TRUE
   AND NOT EXISTS (SELECT 1 FROM process_heartbeats h
                    WHERE h.process_uuid = j.job_assigned_process_uuid
                      AND h.process_stopped_timestamp IS NULL
                      AND h.last_beat_timestamp >= clock_timestamp() - %(seconds)s * interval '1 second')
""",
    ),
    Right(
        "cte-of-live-workers-not-in",
        """
WITH alive AS (
    SELECT process_uuid FROM process_heartbeats
     WHERE extract(epoch FROM clock_timestamp() - last_beat_timestamp) <= %(seconds)s
       AND process_stopped_timestamp IS NULL
)
SELECT job_id, job_assigned_process_uuid AS holder FROM job_queue
 WHERE nullif(job_assigned_process_uuid, '') IS NOT NULL AND job_finished IS NULL
   AND job_assigned_process_uuid NOT IN (SELECT process_uuid FROM alive)
 ORDER BY job_id DESC
""",
    ),
    Right(
        "process-states-by-age-and-exit",
        """
SELECT j.job_id FROM job_queue j
  LEFT JOIN process_states() s ON s.process_uuid = j.job_assigned_process_uuid
 WHERE coalesce(j.job_assigned_process_uuid, '') <> '' AND j.job_finished IS NULL
   AND (s.process_uuid IS NULL OR s.exited OR s.beat_age > make_interval(secs => %(seconds)s))
""",
    ),
]
