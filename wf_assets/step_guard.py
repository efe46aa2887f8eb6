"""Before a step does any work: is the job cancelled, or is this run a duplicate launch?

A cancel writes its mark before it stops the job's runs, and every step reads the
mark before it starts: a run that starts after the cancel, whatever the window
(queued, starting, between steps), stops before it pays for anything.

Whoever launches a job's next attempt (bridge, retry sensor, operator) may race
another launcher; both runs then exist. The first-created run of an attempt is the
one that counts (`counted_runs`); any other stops here, before its first step.
"""

from __future__ import annotations

import dagster as dg

from wf_assets.cancellation import is_cancelled
from wf_assets.job_runs import run_view
from wf_core import tags as t
from wf_core.job_state import duplicate_of
from wf_core.specs import WorkflowSpec


def _stop(instance: dg.DagsterInstance, run_id: str, reason: str, message: str, **extra: str):
    # The sensor's intake skips a run whose retry state is already settled.
    instance.add_run_tags(run_id, {t.STOPPED: reason, t.RETRY_STATE: t.RETRY_DONE, **extra})
    return dg.Failure(description=message, metadata={"stopped": reason}, allow_retries=False)


def _terminated(run: dg.DagsterRun) -> bool:
    # Only a run of the warm worker: any other run's worker is interrupted by the launcher
    # (and ends CANCELED), as before.
    terminal = (dg.DagsterRunStatus.CANCELING, dg.DagsterRunStatus.CANCELED)
    return t.WARM in run.tags and run.status in terminal


def check_run_may_proceed(
    instance: dg.DagsterInstance, spec: WorkflowSpec, job_id: str, run_id: str, step: str
) -> None:
    """A Failure that ends the run untouched if the job is cancelled or the run a duplicate."""
    if is_cancelled(instance, spec, job_id):
        raise _stop(instance, run_id, "cancelled", f"Job cancelled: {step} not started")
    records = instance.get_run_records(filters=dg.RunsFilter(tags={t.PARTITION: job_id}))
    if any(r.dagster_run.run_id == run_id and _terminated(r.dagster_run) for r in records):
        # Terminated (Dagster's UI, the bridge) while it ran in the warm worker, whose
        # process is never signalled: it stops at this step boundary.
        raise _stop(instance, run_id, "cancelled", f"Run terminated: {step} not started")
    winner = duplicate_of([run_view(record) for record in records], run_id)
    if winner is not None:
        message = f"Duplicate launch of attempt {winner.attempt}: run {winner.run_id} runs it"
        raise _stop(instance, run_id, "duplicate", message, **{t.SUPERSEDED_BY: winner.run_id})
