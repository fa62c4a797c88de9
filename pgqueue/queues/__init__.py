"""The queues: the three designs, their workers, heartbeats, pipelines, labs and fleets."""
