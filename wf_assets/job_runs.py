"""Read a job's runs from a Dagster instance as `RunView`s, and its derived state."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import dagster as dg

from wf_assets.cancellation import is_cancelled
from wf_assets.resume import completed_steps
from wf_core import tags as t
from wf_core.job_state import JobState, RunView, counted_runs, derive_job_state
from wf_core.specs import WorkflowSpec


def failure_metadata(instance: dg.DagsterInstance, run_id: str) -> dict[str, Any] | None:
    """The structured record of the run's step failure, if a step failed."""
    records = instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
    for record in reversed(records):
        data = record.dagster_event.step_failure_data if record.dagster_event else None
        if data and data.user_failure_data:
            return {k: v.value for k, v in data.user_failure_data.metadata.items()}
    return None


def run_view(record: dg.RunRecord) -> RunView:
    """A RunRecord as a RunView (no failure metadata: tags carry what rules need)."""
    run = record.dagster_run
    return RunView(
        run_id=run.run_id,
        status=run.status.value,
        tags=dict(run.tags),
        created_at=record.create_timestamp.timestamp(),
    )


def job_run_views(instance: dg.DagsterInstance, job_id: str) -> list[RunView]:
    """Every run of one job, newest first."""
    records = instance.get_run_records(filters=dg.RunsFilter(tags={t.JOB_ID: job_id}))
    return [run_view(record) for record in records]


def load_job_state(
    instance: dg.DagsterInstance, spec: WorkflowSpec, job_id: str, failure_details: bool = True
) -> JobState:
    """The job's state from the instance's runs, checkpoints and cancel mark.

    `failure_details` reads the latest failed run's step-failure metadata (one more
    query); the retry sensor decides from run tags and skips it.
    """
    views = counted_runs(job_run_views(instance, job_id))
    if failure_details and views and views[0].status == "FAILURE":
        views[0] = replace(views[0], failure=failure_metadata(instance, views[0].run_id))
    completed = completed_steps(instance, spec, job_id)
    return derive_job_state(spec, views, completed, is_cancelled(instance, spec, job_id))
