"""Cancelling a job: stop its runs and leave a durable mark that nothing retries it.

The mark is an asset observation on the job's first step, for the job's partition:
it can be written through GraphQL's `reportRunlessAssetEvents` (the bridge) or the
instance (here), and operators see "Cancelled by ..." in the asset's history.
"""

from __future__ import annotations

import dagster as dg

from wf_core.job_state import ACTIVE
from wf_core.specs import WorkflowSpec
from wf_core.tags import cancel_description, cancel_mark_path, is_cancel_mark


def marker_asset_key(spec: WorkflowSpec) -> dg.AssetKey:
    """The asset that carries the cancel mark: the workflow's first step."""
    return dg.AssetKey(cancel_mark_path(spec.id, spec.steps[0].name))


def is_cancelled(instance: dg.DagsterInstance, spec: WorkflowSpec, job_id: str) -> bool:
    """Whether the job carries a cancel mark."""
    records = instance.fetch_observations(
        dg.AssetRecordsFilter(asset_key=marker_asset_key(spec), asset_partitions=[job_id]),
        limit=50,
    ).records
    observations = (r.event_log_entry.asset_observation for r in records)
    return any(o is not None and is_cancel_mark(o.description) for o in observations)


def cancel_job(
    instance: dg.DagsterInstance, spec: WorkflowSpec, job_id: str, user: str, run_ids: list[str]
) -> None:
    """Mark the job cancelled, then stop its queued and running runs."""
    instance.report_runless_asset_event(
        dg.AssetObservation(
            asset_key=marker_asset_key(spec),
            partition=job_id,
            description=cancel_description(user),
        )
    )
    for run_id in run_ids:
        run = instance.get_run_by_id(run_id)
        if run is not None and run.status.value in ACTIVE:
            instance.run_coordinator.cancel_run(run_id)
