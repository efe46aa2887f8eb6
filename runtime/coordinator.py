"""The run coordinator: Dagster's queue, except that a workflow run the queue's limits
allow right now goes to the warm continuation worker at once.

Configured in dagster.yaml (runtime.instance) as `run_coordinator` with the queue's own
config, when the state database is PostgreSQL and CONTINUATION_WORKER is on. On a
submit (the bridge's first run of a job, a retry, a fallback continuation) it launches
the run at once, without the queue daemon's dequeue (~0.5 s) or a fork, if
- no run waits in the queue (a burst keeps its order, behind the queued runs; the submit
  costs one query),
- a warm worker listens on the state database (wf_store/wakeups.py),
- the job has no run in progress and its user fewer than the queue's per-user limit
  (the same tag limits the queue applies), and
- a worker is idle (fewer warm runs in progress than workers listening): a burst
  beyond that goes to the queue, whose forked run workers run in parallel;
otherwise it queues the run exactly as Dagster's QueuedRunCoordinator does.
The launch is Dagster's own (`instance.launch_run`: the STARTING event); the prewarmed
launcher sees the `wf/warm` tag and leaves the run to the worker, woken by a NOTIFY.
A run no worker takes stays STARTING: a worker's sweep finds it, else the crash
detector and run monitoring fail it as before.
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from wf_core import settings
from wf_core import tags as t
from wf_store.state_db import shared_engine
from wf_store.wakeups import LAUNCH_CHANNEL, notify, workers_listening

IN_PROGRESS = [
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def _per_user_limit(limits: Any) -> int:
    """The queue's per-user limit among its tag limits (0: none)."""
    for limit in limits or []:
        if limit.get("key") == t.USER:
            return int(limit.get("limit") or 0)
    return 0


class WarmRunCoordinator(dg.QueuedRunCoordinator):
    """Dagster's queue, with an immediate hand-over to the warm worker when allowed."""

    def submit_run(self, context: dg.SubmitRunContext) -> dg.DagsterRun:
        """Launch for the warm worker now if allowed, else enqueue."""
        run = context.dagster_run
        if run.status == dg.DagsterRunStatus.NOT_STARTED and self._warm_allowed(run):
            self._instance.add_run_tags(run.run_id, {t.WARM: "launch"})
            launched = self._instance.launch_run(run.run_id, context.workspace)
            engine = shared_engine(settings.state_db_url())
            with engine.begin() as conn:
                notify(conn, LAUNCH_CHANNEL, run.run_id)
            return launched
        return super().submit_run(context)

    def _warm_allowed(self, run: dg.DagsterRun) -> bool:
        tags = run.tags
        if t.JOB_ID not in tags or t.USER not in tags or t.WARM in tags:
            return False
        if not getattr(self._instance.run_launcher, "leaves_warm_runs", False):
            return False  # another launcher would start the run itself as well
        instance = self._instance
        # Runs already wait in the queue (a burst): this one waits behind them, in order,
        # and the submit costs one query.
        if instance.get_runs_count(dg.RunsFilter(statuses=[dg.DagsterRunStatus.QUEUED])) > 0:
            return False
        try:
            workers = workers_listening(shared_engine(settings.state_db_url()))
        except Exception:  # the state database does not answer: the queue's path
            return False
        # A worker executes one run at a time: a burst beyond the idle workers goes to the
        # queue, whose forked run workers run in parallel.
        warm = dg.RunsFilter(tags={t.WARM: list(t.WARM_VALUES)}, statuses=IN_PROGRESS)
        if workers == 0 or instance.get_runs_count(warm) >= workers:
            return False
        busy = dg.RunsFilter(tags={t.PARTITION: tags[t.JOB_ID]}, statuses=IN_PROGRESS)
        if instance.get_runs_count(busy) > 0:
            return False
        per_user = _per_user_limit(self.get_run_queue_config().tag_concurrency_limits)
        if per_user > 0:
            mine = dg.RunsFilter(tags={t.USER: tags[t.USER]}, statuses=IN_PROGRESS)
            if instance.get_runs_count(mine) >= per_user:
                return False
        return True
