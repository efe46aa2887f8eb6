"""Who runs a run: host, pid and process start time, so a dead worker can be told apart.

Under Dagster's default run launcher, run monitoring cannot see a run worker that
died. Each step records its worker's identity as a run tag; the retry sensor checks
it on the same host and fails runs whose worker is gone.
"""

from __future__ import annotations

import os
import socket

import dagster as dg

from wf_core import tags as t

# dagster-celery's tag on a run it launched (runtime/celery_launcher.py).
CELERY_TASK_TAG = "dagster-celery/task_id"


def _start_ticks(pid: int) -> str | None:
    """The process start time in clock ticks since boot (guards against pid reuse)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return fields[19]
    except (OSError, IndexError):
        return None


def worker_identity(pid: int | None = None) -> str:
    """`host:pid:start` of this (or the given) process."""
    pid = pid or os.getpid()
    return f"{socket.gethostname()}:{pid}:{_start_ticks(pid) or '?'}"


def worker_alive(identity: str) -> bool | None:
    """True/False for a worker on this host; None when it runs elsewhere or is unknown."""
    try:
        host, pid, start = identity.rsplit(":", 2)
    except ValueError:
        return None
    if host != socket.gethostname() or not pid.isdigit():
        return None
    current = _start_ticks(int(pid))
    if current is None:
        return False
    # A zombie still has a /proc entry: read its state too.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z" and (start == "?" or current == start)


def run_worker_identity(instance: dg.DagsterInstance, run: dg.DagsterRun) -> str | None:
    """The run's worker: its `wf/worker` tag, else the pid of its RUN_START event.

    Before its first step a worker is known only by that event; a run that has not
    started yet has neither (None).
    """
    if run.tags.get(t.WORKER):
        return run.tags[t.WORKER]
    if CELERY_TASK_TAG in run.tags:
        # Its worker is on another host: the event's pid says nothing about this one's.
        return None
    starts = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_START)
    event = starts[0].dagster_event if starts else None
    # The pid is on the DagsterEvent; an EventLogEntry has none.
    return worker_identity(event.pid) if event is not None and event.pid else None
