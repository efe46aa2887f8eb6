"""Reading a job's cancel mark from the instance (the sensor and the step guard).

The bridge cancels a job (the one cancel path): it writes the mark, an asset
observation on the job's first step for the job's partition, through GraphQL's
`reportRunlessAssetEvents`, then stops the job's runs. Operators see "Job cancelled
by ..." in the asset's history.
"""

from __future__ import annotations

import dagster as dg

from wf_core.specs import WorkflowSpec
from wf_core.tags import cancel_mark_path, is_cancel_mark


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
