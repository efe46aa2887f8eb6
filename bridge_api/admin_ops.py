"""What operators do to many jobs at once: find them, retry or cancel them, read a job's
whole history. Used by the admin routes and by `wf-admin`, inside the app's context.

Jobs are found in the job index (wf_store.job_index, kept by the metrics sensor); before
acting on one, its live state is read from Dagster and the same rules as a user's retry
or cancel apply (wf_core.control), so a stale index row never retries a running job.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from flask import current_app

from bridge_api import job_actions
from bridge_api.dagster_gateway import DagsterGateway
from bridge_api.errors import ApiError
from bridge_api.execution_view import iso
from bridge_api.predictions import prediction_store
from wf_core import tags as t
from wf_core.control import JobStateError
from wf_core.times import iso_to_epoch_seconds
from wf_store.job_index import IndexedJob, JobFilter, JobIndex
from wf_store.spec_versions import SpecVersions

log = logging.getLogger(__name__)
MAX_BULK = 1000
# Who asked for an admin retry (the launcher label stays `admin`: bounded for metrics).
ACTOR_TAG = "wf/actor"


@dataclass
class BulkResult:
    """What a bulk action matched, did, and skipped (with why)."""

    matched: int = 0
    acted: int = 0
    job_ids: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)


def _gateway() -> DagsterGateway:
    return current_app.extensions["dagster"]


def job_index() -> JobIndex:
    """The job index on the app's state database."""
    return JobIndex(prediction_store())


def indexed_view(job: IndexedJob) -> dict[str, Any]:
    """An index row as API JSON."""
    row = asdict(job)
    row["created_at"], row["updated_at"] = iso(job.created_at), iso(job.updated_at)
    return row


def find_jobs(where: JobFilter, limit: int, before: tuple[float, str] | None = None):
    """Matching jobs, newest first."""
    return job_index().find(where, limit, before)


def bulk(action: str, where: JobFilter, actor: str, dry_run: bool, limit: int) -> BulkResult:
    """Retry or cancel every job matching `where` (at most `limit`); `dry_run` only counts."""
    jobs = find_jobs(where, min(limit, MAX_BULK))
    result = BulkResult(matched=len(jobs))
    if dry_run:
        result.job_ids = [job.job_id for job in jobs]
        return result
    act = retry_job if action == "retry" else cancel_job
    for job in jobs:
        try:
            act(job.job_id, job.workflow_id, actor)
        except JobStateError as exc:
            result.skipped.append({"job_id": job.job_id, "reason": str(exc)})
            continue
        except ApiError as exc:
            result.skipped.append({"job_id": job.job_id, "reason": exc.message})
            if exc.status >= 500:  # the orchestrator is unreachable: stop, report so far
                break
            continue
        result.acted += 1
        result.job_ids.append(job.job_id)
        log.info(
            "admin %s of job %s", action, job.job_id, extra={"job_id": job.job_id, "user": actor}
        )
    return result


def _live(job_id: str, workflow_id: str):
    catalog = current_app.extensions["specs"]
    spec = catalog.for_job(job_id, workflow_id)  # the version the job runs on
    if spec is None:
        raise JobStateError(f"workflow {workflow_id} is no longer loaded")
    snapshot = _gateway().snapshot(job_id, catalog.specs_for_job(job_id))
    if not snapshot.runs:
        raise JobStateError(f"job {job_id} has no runs")
    return spec, snapshot


def retry_job(job_id: str, workflow_id: str, actor: str) -> str:
    """Resume one failed or pending_retry job from its checkpoints, holding its credits as
    a user's retry does; the new run id."""
    spec, snapshot = _live(job_id, workflow_id)
    run_id, _ = job_actions.retry(spec, snapshot, "admin", {ACTOR_TAG: actor[:200]})
    return run_id


def cancel_job(job_id: str, workflow_id: str, actor: str) -> None:
    """Cancel one pending, running or pending_retry job, settling its credits at once."""
    spec, snapshot = _live(job_id, workflow_id)
    job_actions.cancel(spec, snapshot, f"admin {actor}")


def history(job_id: str) -> list[dict[str, Any]] | None:
    """Every run, failure, checkpoint and prediction of a job, oldest first; None if no
    such job."""
    snapshot = _gateway().snapshot(job_id, current_app.extensions["specs"].specs_for_job(job_id))
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
