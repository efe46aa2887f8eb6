"""Retry and cancel: one implementation for every caller (user routes, admin routes,
`wf-admin`), so the money and state rules hold for all of them.

- A retry is planned from the job's live state on its own spec version, holds the
  credits of its unfinished steps again (402 if the balance is short), launches, and
  then checks what happened meanwhile: another launcher's run of the same attempt wins
  (409), and so does a cancel that landed while it launched (409 with the job's state:
  nothing runs, the hold goes back).
- A cancel writes the mark first (every step reads it before it starts), stops the
  job's predictions and runs, and settles the credits at once: the steps the provider
  had already finished (billed) are captured, checkpointed or not, and the rest is
  released (README, "What a cancel charges").
"""

from __future__ import annotations

from typing import Any

from flask import current_app

from bridge_api.dagster_client.snapshots import JobSnapshot
from bridge_api.http.errors import ApiError
from bridge_api.jobs.credits import reserve_for_retry, settle_job
from bridge_api.jobs.execution_view import job_state
from bridge_api.jobs.lookup import catalog, gateway
from bridge_api.stores.predictions import prediction_store
from wf_core.control import JobStateError, RetryPlan, check_cancellable, plan_retry
from wf_core.job_state import STOPPABLE, duplicate_of
from wf_core.specs import WorkflowSpec, continuation_problem
from wf_core.tags import cancel_description

RETRYABLE_STATUSES = ("failed", "pending_retry")


def retry(
    spec: WorkflowSpec,
    snapshot: JobSnapshot,
    launched_by: str,
    extra_tags: dict[str, str] | None = None,
) -> tuple[str, RetryPlan]:
    """Resume a failed or pending_retry job from its checkpoints; (run id, plan).

    JobStateError when its state allows no retry; ApiError 409 when the code can no
    longer run it, when another launcher won, or when a cancel landed meanwhile."""
    job_id = snapshot.job_id
    state = job_state(spec, snapshot)
    if state.status not in RETRYABLE_STATUSES:
        raise JobStateError(f"a {state.status} job cannot be retried")
    parent_config = snapshot.run_configs.get(state.latest.run_id) if state.latest else None
    plan = plan_retry(spec, state, parent_config, launched_by=launched_by)
    # The job retries on its own version: the running code must still have its steps.
    problem = continuation_problem(spec, catalog().get(spec.id), plan.steps)
    if problem:
        raise ApiError(409, "spec_changed", f"This job cannot continue: {problem}")
    reserve_for_retry(job_id, state.completed)  # only if its hold was released: 402 or held
    run_id = gateway().launch(
        plan.job_name,
        plan.run_config,
        {**plan.tags, **(extra_tags or {})},
        asset_selection=[[spec.id, step] for step in plan.steps],
    )
    after = gateway().snapshot(job_id, catalog().specs_for_job(job_id))
    # Another launcher (a second request, the retry sensor) may have asked for the same
    # attempt at the same moment: the first-created run is the attempt.
    winner = duplicate_of(after.runs, run_id)
    if winner is not None:
        gateway().terminate(run_id)
        raise ApiError(
            409,
            "invalid_state",
            "a retry of this job is already running",
            job_status="pending",
            execution_id=winner.run_id,
        )
    if after.cancelled:
        # A cancel landed while this retry launched: its run stops before any step, so
        # the answer says so, and what this retry held goes back now.
        gateway().terminate(run_id)
        settle_job(job_id, state.completed, "cancelled")
        raise ApiError(
            409,
            "invalid_state",
            "the job was cancelled while the retry started: nothing will run",
            job_status="cancelled",
        )
    return run_id, plan


def cancel(spec: WorkflowSpec, snapshot: JobSnapshot, by: str) -> dict[str, Any]:
    """Stop a pending, running or pending_retry job; nothing retries it afterwards."""
    job_id = snapshot.job_id
    state = job_state(spec, snapshot)
    check_cancellable(state)
    # The mark first: every step reads it before it starts, so a run launched or
    # starting in any window after this line stops before doing work.
    gateway().mark_cancelled(spec, job_id, cancel_description(by))
    _stop_predictions(job_id)
    _terminate_active(snapshot.runs)
    # Once more for a run launched while the mark was being written.
    _terminate_active(gateway().snapshot(job_id, catalog().specs_for_job(job_id)).runs)
    # Steps the provider finished before the cancel were billed: they are paid; the rest
    # goes back.
    settle_job(job_id, state.completed | _billed_steps(job_id), "cancelled")
    return {"job_id": job_id, "status": "cancelled", "message": "Workflow cancelled"}


def _billed_steps(job_id: str) -> set[str]:
    """Steps whose prediction the provider reported succeeded (and so billed)."""
    try:
        rows = prediction_store().for_job(job_id)
    except Exception:
        current_app.logger.exception("job %s: predictions unreadable; charging checkpoints", job_id)
        return set()
    return {row.step for row in rows if row.provider_status == "succeeded"}


def _stop_predictions(job_id: str) -> None:
    """Ask the parked-steps sensor to stop the job's predictions at the provider."""
    try:
        prediction_store().request_cancel(job_id)
    except Exception:
        # The cancel mark is written and stops the job whatever happens here; a prediction
        # left running ends on its own and its continuation stops on the mark.
        current_app.logger.exception("job %s: predictions not marked for cancel", job_id)


def _terminate_active(runs) -> None:
    for run in runs:
        if run.status in STOPPABLE:
            gateway().terminate(run.run_id)
