"""The app's Dagster client and spec catalog, and a job as its caller may see it."""

from __future__ import annotations

from flask import current_app

from bridge_api.dagster_client.gateway import DagsterGateway
from bridge_api.dagster_client.snapshots import JobSnapshot
from bridge_api.http.auth import current_user
from bridge_api.http.errors import ApiError
from bridge_api.stores.catalog import SpecCatalog
from wf_core.job_ids import is_job_id
from wf_core.specs import WorkflowSpec


def gateway() -> DagsterGateway:
    """The app's Dagster gateway."""
    return current_app.extensions["dagster"]


def catalog() -> SpecCatalog:
    """The app's spec catalog."""
    return current_app.extensions["specs"]


def job_not_found(job_id: str) -> ApiError:
    """The one answer for a job that is missing or someone else's."""
    return ApiError(404, "job_not_found", f"No job {job_id}")


def owned_spec(job_id: str, owner: str | None, workflow_id: str | None) -> WorkflowSpec:
    """The spec version of a job with this owner and workflow, when the caller owns it."""
    spec = catalog().for_job(job_id, workflow_id) if workflow_id else None
    if spec is None or owner != current_user():
        raise job_not_found(job_id)
    return spec


def load_owned_job(job_id: str) -> tuple[WorkflowSpec, JobSnapshot]:
    """The caller's job; anyone else's, or none, is the same 404."""
    if not is_job_id(job_id):
        raise job_not_found(job_id)
    snapshot = gateway().snapshot(job_id, catalog().specs_for_job(job_id))
    if not snapshot.runs:
        raise job_not_found(job_id)
    return owned_spec(job_id, snapshot.owner, snapshot.workflow_id), snapshot
