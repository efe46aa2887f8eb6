"""A job's whole history for operators: every run, failure, checkpoint, prediction and
owner check, oldest first (the admin history route and `wf-admin history`)."""

from __future__ import annotations

from typing import Any

from bridge_api.jobs.execution_view import iso
from bridge_api.jobs.lookup import catalog, gateway
from bridge_api.stores.predictions import prediction_store
from wf_core import tags as t
from wf_core.times import iso_to_epoch_seconds
from wf_store.spec_versions import SpecVersions


def history(job_id: str) -> list[dict[str, Any]] | None:
    """Every run, failure, checkpoint and prediction of a job, oldest first; None if no
    such job."""
    snapshot = gateway().snapshot(job_id, catalog().specs_for_job(job_id))
    if not snapshot.runs:
        return None
    entries: list[tuple[float, dict[str, Any]]] = []
    for run in snapshot.runs:
        times = snapshot.run_times.get(run.run_id, {})
        tags = run.tags
        entry = {
            "kind": "run",
            "run_id": run.run_id,
            "status": run.status,
            "attempt": run.attempt,
            "launched_by": tags.get(t.LAUNCHED_BY),
            "user": tags.get(t.USER),
            "started_at": iso(times.get("start")),
            "ended_at": iso(times.get("end")),
        }
        entries.append((run.created_at, {**entry, "at": iso(run.created_at)}))
        if run.status == "FAILURE":
            failure = {
                "kind": "error",
                "run_id": run.run_id,
                "attempt": run.attempt,
                "step": tags.get(t.FAILED_STEP),
                "error_type": tags.get(t.ERROR_TYPE, "server_unavailable"),
                "retryable": tags.get(t.RETRYABLE) == "true" or t.ERROR_TYPE not in tags,
                "message": tags.get(t.ERROR_MESSAGE),
                "retry_state": tags.get(t.RETRY_STATE),
            }
            at = times.get("end") or run.created_at
            entries.append((at, {**failure, "at": iso(at)}))
    for step, checkpoint in snapshot.checkpoints.items():
        at = iso_to_epoch_seconds(checkpoint.completed_at)
        # A checkpoint never carried a "status": the entry's has always been null.
        entry = {"kind": "checkpoint", "step": step, "status": None}
        entries.append((at, {**entry, "output": checkpoint.output, "at": iso(at)}))
    for row in prediction_store().for_job(job_id):
        entry = {
            "kind": "prediction",
            "step": row.step,
            "attempt": row.attempt,
            "provider": row.provider,
            "model": row.model,
            "prediction_id": row.prediction_id,
            "state": row.state,
            "provider_status": row.provider_status,
            "error": row.error,
            "completed_at": iso(row.completed_at),
        }
        entries.append((row.created_at, {**entry, "at": iso(row.created_at)}))
    for event in SpecVersions(prediction_store()).owner_events(job_id=job_id):
        # The owner check found the job without an owner and repaired or failed it.
        entry = {"kind": "owner_check", "action": event.action, "message": event.message}
        entries.append((event.at, {**entry, "at": iso(event.at)}))
    entries.sort(key=lambda pair: pair[0])
    return [entry for _, entry in entries]
