"""Ending a job the running code can no longer continue (its workflow changed or is gone).

A job runs on its pinned spec version. When the code location can no longer run its
remaining steps (a step kind removed, a step renamed, a model gone), the job must end
with a clear permanent error rather than wait forever. It ends the way every job
failure does, so credits, callbacks, metrics and the page follow the usual path: one
run of the workflow's first step, tagged with the reason, whose step raises a
`spec_changed` HardError before doing anything. Its live predictions are cancelled.
"""

from __future__ import annotations

import dagster as dg

from wf_assets.asset_keys import asset_key_for
from wf_core import tags as t
from wf_core.specs import WorkflowSpec
from wf_store.predictions import PredictionStore


def end_job_request(
    current: WorkflowSpec,
    job_id: str,
    parent: dg.DagsterRun | None,
    reason: str,
    store: PredictionStore,
) -> dg.RunRequest:
    """Cancel the job's predictions and ask for the run that fails it with `reason`."""
    store.request_cancel(job_id)
    parent_tags = parent.tags if parent else {}
    attempt = int(parent_tags.get(t.ATTEMPT, "1") or 1) + 1
    tags = t.job_tags(
        current.id,
        job_id,
        parent_tags.get(t.USER, "unknown"),
        "spec_changed",
        attempt=attempt,
        parent_run=parent.run_id if parent else None,
    )
    tags[t.END_REASON] = f"This job's workflow changed and it cannot continue: {reason}"
    tags[t.RETRY_STATE] = t.RETRY_DONE
    first = current.steps[0].name
    return dg.RunRequest(
        run_key=f"end:{job_id}",  # once per job, however many ticks ask
        job_name=current.job_name,
        partition_key=job_id,
        asset_selection=[asset_key_for(current, first)],
        tags=tags,
    )
