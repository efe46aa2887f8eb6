"""Shape a job as API.md's execution document, from one GraphQL snapshot (and, for a
running job, its rows of the prediction store: what its step waits on at the provider)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bridge_api.dagster_client.snapshots import JobSnapshot
from bridge_api.stores.predictions import running_step, waiting_prediction
from wf_core import retry_policy
from wf_core import tags as t
from wf_core.job_state import JobState, derive_job_state
from wf_core.retry_policy import RetrySettings
from wf_core.specs import WorkflowSpec
from wf_core.times import epoch_seconds_to_iso
from wf_store.predictions import Prediction


def iso(epoch: float | None) -> str | None:
    """Epoch seconds as ISO-8601 UTC."""
    return None if epoch is None else epoch_seconds_to_iso(epoch)


def job_state(spec: WorkflowSpec, snapshot: JobSnapshot) -> JobState:
    """The shared job-state rules over this snapshot."""
    return derive_job_state(spec, snapshot.runs, set(snapshot.checkpoints), snapshot.cancelled)


def next_retry_at(spec: WorkflowSpec, state: JobState, settings: RetrySettings) -> str | None:
    """When the retry sensor will let the job run again (the core's rule), as ISO-8601."""
    return iso(retry_policy.next_retry_at(spec, state, settings))


def _failed_entry(spec, state: JobState, snapshot: JobSnapshot, settings) -> dict[str, Any]:
    run = state.latest
    assert run is not None  # a failed job has a run
    error = state.error or {}
    step = spec.step(state.failed_step)
    return {
        "step_name": step.name,
        "step_type": step.type,
        "status": "failed_retryable" if state.status == "pending_retry" else "failed",
        "error": error.get("message"),
        "error_type": error.get("error_type"),
        "retry_count": state.attempts.get(step.name, 1),
        "last_attempt": run.tags.get(t.FAILED_AT) or iso(snapshot.run_times[run.run_id]["end"]),
        "started_at": iso(snapshot.run_times[run.run_id]["start"]),
    }


def _running_entry(state: JobState, snapshot: JobSnapshot, waiting: Prediction | None) -> dict:
    """The running step: since its prediction was asked for, and the provider's view of it
    (API.md, a step waiting on its provider); else since its run started."""
    if waiting is not None:
        return {
            "status": "running",
            "started_at": iso(waiting.created_at),
            "provider": waiting.public(),
        }
    # A parked job's run has ended, so its start is only the nearest time we know.
    run = state.latest
    start = snapshot.run_times.get(run.run_id, {}).get("start") if run else None
    return {"status": "running", "started_at": iso(start)}


def checkpoints_view(
    spec, state: JobState, snapshot: JobSnapshot, settings, rows: Sequence[Prediction] = ()
) -> dict:
    """API.md's `checkpoints`, keyed by step index as a string."""
    view: dict[str, dict[str, Any]] = {}
    running = running_step(state)
    for index, step in enumerate(spec.steps):
        checkpoint = snapshot.checkpoints.get(step.name)
        entry: dict[str, Any] = {"step_name": step.name, "step_type": step.type}
        if checkpoint is not None:
            entry.update(
                status="completed",
                output=checkpoint.output,
                started_at=checkpoint.started_at,
                completed_at=checkpoint.completed_at,
            )
        elif step.name == state.failed_step and state.status in ("failed", "pending_retry"):
            entry = _failed_entry(spec, state, snapshot, settings)
        elif step.name == running and state.latest:
            entry.update(_running_entry(state, snapshot, waiting_prediction(state, rows)))
        else:
            entry["status"] = "pending"
        view[str(index)] = entry
    return view


def execution_view(
    spec: WorkflowSpec,
    snapshot: JobSnapshot,
    settings: RetrySettings,
    rows: Sequence[Prediction] = (),
    checkpoints: bool = True,
) -> dict:
    """The whole execution document of API.md; `rows` are the job's prediction rows.
    Without `checkpoints`, the summary the jobs list shows (no `checkpoints` key)."""
    state = job_state(spec, snapshot)
    latest = state.latest
    error_info = None
    if state.status in ("failed", "pending_retry") and state.error:
        error_info = {
            "step": spec.step_index(state.failed_step) if state.failed_step else None,
            "error_type": state.error.get("error_type"),
            "retryable": state.status == "pending_retry",
            "message": state.error.get("message"),
            "next_retry_at": next_retry_at(spec, state, settings),
        }
    last = spec.steps[-1].name
    result = snapshot.checkpoints[last].output if state.status == "completed" else None
    current = running_step(state) or (state.next_steps[0] if state.next_steps else last)
    created = min((r.created_at for r in snapshot.runs), default=None)
    updated = max((times["updated"] or 0 for times in snapshot.run_times.values()), default=None)
    waiting = waiting_prediction(state, rows)
    if waiting is not None:  # the provider's progress changes the document too
        updated = max(updated or 0, waiting.updated_at)
    return {
        "id": latest.run_id if latest else None,
        "job_id": snapshot.job_id,
        "workflow_id": spec.id,
        "status": state.status,
        "current_step": spec.step_index(current),
        "total_steps": len(spec.steps),
        "checkpoints": checkpoints_view(spec, state, snapshot, settings, rows)
        if checkpoints
        else None,
        "error_info": error_info,
        "result": result,
        "can_retry": state.can_retry,
        "retry_count": state.retry_count,
        "created_at": iso(created),
        "updated_at": iso(updated),
    }
