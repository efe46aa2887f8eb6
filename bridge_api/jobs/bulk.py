"""What operators do to many jobs at once: find them, retry or cancel them (a job's whole
history is in history.py). Used by the admin routes and by `wf-admin`, inside the app's
context; a retry or cancel is the user's own (actions.py).

Jobs are found in the job read model (wf_store.job_rows, written with every transition);
before acting on one, its live state is read from Dagster and the same rules as a user's
retry or cancel apply (wf_core.control), so a row behind the event log never retries a
running job.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from bridge_api.dagster_client.errors import DagsterError
from bridge_api.http.errors import ApiError
from bridge_api.jobs import actions
from bridge_api.jobs.execution_view import iso
from bridge_api.jobs.lookup import catalog, gateway
from bridge_api.jobs.read_model import job_rows
from wf_core.control import JobStateError
from wf_store.job_rows import JobFilter, JobRow

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


# What the admin list shows of a row (the fields of the job index it replaced).
LISTED = (
    "job_id",
    "workflow_id",
    "user_id",
    "status",
    "error_type",
    "failed_step",
    "attempt",
    "run_id",
)


def indexed_view(job: JobRow) -> dict[str, Any]:
    """A read-model row as API JSON."""
    row: dict[str, Any] = {name: getattr(job, name) for name in LISTED}
    row["created_at"], row["updated_at"] = iso(job.created_at), iso(job.updated_at)
    return row


def find_jobs(
    where: JobFilter, limit: int, before: tuple[float, str] | None = None
) -> list[JobRow]:
    """Matching jobs, newest first."""
    return job_rows().find(where, limit, before)


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
        except DagsterError as exc:  # the orchestrator is unreachable: stop, report so far
            result.skipped.append({"job_id": job.job_id, "reason": exc.message})
            break
        except ApiError as exc:
            result.skipped.append({"job_id": job.job_id, "reason": exc.message})
            if exc.status >= 500:  # a dependency is down: stop, report so far
                break
            continue
        result.acted += 1
        result.job_ids.append(job.job_id)
        log.info(
            "admin %s of job %s", action, job.job_id, extra={"job_id": job.job_id, "user": actor}
        )
    return result


def _live(job_id: str, workflow_id: str):
    spec = catalog().for_job(job_id, workflow_id)  # the version the job runs on
    if spec is None:
        raise JobStateError(f"workflow {workflow_id} is no longer loaded")
    snapshot = gateway().snapshot(job_id, catalog().specs_for_job(job_id))
    if not snapshot.runs:
        raise JobStateError(f"job {job_id} has no runs")
    return spec, snapshot


def retry_job(job_id: str, workflow_id: str, actor: str) -> str:
    """Resume one failed or pending_retry job from its checkpoints, holding its credits as
    a user's retry does; the new run id."""
    spec, snapshot = _live(job_id, workflow_id)
    run_id, _ = actions.retry(spec, snapshot, "admin", {ACTOR_TAG: actor[:200]})
    return run_id


def cancel_job(job_id: str, workflow_id: str, actor: str) -> None:
    """Cancel one pending, running or pending_retry job, settling its credits at once."""
    spec, snapshot = _live(job_id, workflow_id)
    actions.cancel(spec, snapshot, f"admin {actor}")
