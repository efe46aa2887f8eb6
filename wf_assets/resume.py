"""Which steps of a job have a checkpoint in the instance; the job's partition."""

from __future__ import annotations

import dagster as dg

from wf_assets.asset_keys import asset_key_for
from wf_core.job_ids import JOBS_PARTITIONS_NAME
from wf_core.specs import WorkflowSpec


def completed_steps(instance: dg.DagsterInstance, spec: WorkflowSpec, job_id: str) -> set[str]:
    """Steps whose asset has a materialization (a checkpoint) for `job_id`."""
    done = set()
    for step in spec.steps:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=asset_key_for(spec, step.name), asset_partitions=[job_id]
            ),
            limit=1,
        ).records
        if records:
            done.add(step.name)
    return done


def ensure_partition(instance: dg.DagsterInstance, job_id: str) -> None:
    """Add the job's dynamic partition (a run for a missing one is accepted, then fails)."""
    if not instance.has_dynamic_partition(JOBS_PARTITIONS_NAME, job_id):
        instance.add_dynamic_partitions(JOBS_PARTITIONS_NAME, [job_id])
