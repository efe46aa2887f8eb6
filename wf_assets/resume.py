"""Which steps of a job already have a checkpoint, and which must run to finish it."""

from __future__ import annotations

import dagster as dg

from wf_assets.asset_keys import asset_key_for
from wf_assets.partitions import JOBS_PARTITIONS_NAME
from wf_assets.specs import WorkflowSpec


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


def steps_to_run(spec: WorkflowSpec, completed: set[str]) -> list[str]:
    """Every step without a checkpoint, plus everything downstream of one, in spec order."""
    missing = {s.name for s in spec.steps} - completed
    selected = spec.downstream_of(missing)
    return [s.name for s in spec.steps if s.name in selected]


def first_step_to_run(spec: WorkflowSpec, completed: set[str]) -> int | None:
    """Index of the first step a resume would run (None: the job is complete)."""
    remaining = steps_to_run(spec, completed)
    return spec.step_index(remaining[0]) if remaining else None


def ensure_partition(instance: dg.DagsterInstance, job_id: str) -> None:
    """Add the job's dynamic partition (a run for a missing one is accepted, then fails)."""
    if not instance.has_dynamic_partition(JOBS_PARTITIONS_NAME, job_id):
        instance.add_dynamic_partitions(JOBS_PARTITIONS_NAME, [job_id])
