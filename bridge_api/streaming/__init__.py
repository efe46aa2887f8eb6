"""Streaming a job: the event model, the readers, the shared feeds (one poller per job)."""
