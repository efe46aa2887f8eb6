"""Retry and cancel: the plans both the retry sensor and the bridge carry out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from wf_core import tags as t
from wf_core.job_state import JobState
from wf_core.run_config import config_for_steps
from wf_core.specs import WorkflowSpec


class JobStateError(Exception):
    """The job is in a state that does not allow the action (HTTP 409)."""


@dataclass(frozen=True)
class RetryPlan:
    """A run that resumes a job: which steps, with which config and tags."""

    job_name: str
    job_id: str
    steps: list[str]
    resume_from_step: int
    run_config: dict[str, Any]
    tags: dict[str, str]


def plan_retry(
    spec: WorkflowSpec,
    state: JobState,
    parent_run_config: Mapping[str, Any] | None,
    launched_by: str,
    model_override: str | None = None,
) -> RetryPlan:
    """Resume from the first step without a checkpoint, with the parent run's options."""
    if state.latest is None or not state.next_steps:
        raise JobStateError(f"job is {state.status}: nothing to retry")
    parent = state.latest
    steps = state.next_steps
    ops = config_for_steps(spec, parent_run_config, steps)["ops"]
    if model_override and state.failed_step:
        op = spec.op_name(state.failed_step)
        ops.setdefault(op, {"config": {}}).setdefault("config", {})["model"] = model_override
    job_id = parent.tags[t.JOB_ID]
    tags = t.job_tags(
        spec.id,
        job_id,
        parent.tags.get(t.USER, "unknown"),
        launched_by,
        attempt=parent.attempt + 1,
        parent_run=parent.run_id,
    )
    return RetryPlan(
        job_name=spec.job_name,
        job_id=job_id,
        steps=steps,
        resume_from_step=spec.step_index(steps[0]),
        run_config={"ops": ops},
        tags=tags,
    )


def plan_manual_retry(
    spec: WorkflowSpec, state: JobState, parent_run_config: Mapping[str, Any] | None
) -> RetryPlan:
    """A user's retry: allowed for failed and pending_retry jobs only."""
    if state.status not in ("failed", "pending_retry"):
        raise JobStateError(f"a {state.status} job cannot be retried")
    return plan_retry(spec, state, parent_run_config, launched_by="manual_retry")


def check_cancellable(state: JobState) -> None:
    """Only pending, running and pending_retry jobs can be cancelled."""
    if state.status not in ("pending", "running", "pending_retry"):
        raise JobStateError(f"a {state.status} job cannot be cancelled")
