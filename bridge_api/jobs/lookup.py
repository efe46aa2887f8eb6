"""The app's Dagster client and spec catalog, and a job as its caller may see it."""

from __future__ import annotations

import logging

from flask import current_app
from sqlalchemy.exc import SQLAlchemyError

from bridge_api.dagster_client.gateway import DagsterGateway
from bridge_api.dagster_client.snapshots import JobSnapshot
from bridge_api.http.auth import current_user
from bridge_api.http.errors import ApiError
from bridge_api.jobs.execution_view import job_state
from bridge_api.jobs.read_model import job_rows, predictions_of_record, read_row, snapshot_of
from bridge_api.stores.catalog import SpecCatalog
from bridge_api.stores.predictions import predictions_of
from wf_core import tags as t
from wf_core.job_ids import is_job_id
from wf_core.specs import WorkflowSpec
from wf_store.predictions import Prediction

log = logging.getLogger(__name__)


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


def load_owned_view(job_id: str) -> tuple[WorkflowSpec, JobSnapshot, list[Prediction]]:
    """The caller's job for display: its snapshot and prediction rows from the read model
    (one row, no GraphQL); a job without a row is read from Dagster as before."""
    if not is_job_id(job_id):
        raise job_not_found(job_id)
    row = read_row(job_id)
    if row is None:
        spec, snapshot = load_owned_job(job_id)
        rows: list[Prediction] = []
        if snapshot.runs:  # only a running step waits on a prediction
            if job_state(spec, snapshot).status == "running":
                rows = (predictions_of([job_id]) or {}).get(job_id, [])
        return spec, snapshot, rows
    record = row.job_record()
    first = record.first_run()
    newest = max(record.runs.values(), key=lambda r: (r.created_at, r.run_id), default=None)
    owner = first.tags.get(t.USER) if first else None
    workflow = newest.tags.get(t.WORKFLOW) if newest else None
    # The version the job was pinned to at its start is the one its runs name: read from
    # the process's cache of versions, with no query for the pin.
    pinned = catalog().stored_version(row.spec_version, workflow)
    if pinned is None or owner != current_user():
        pinned = owned_spec(job_id, owner, workflow)
    return pinned, snapshot_of(record, pinned), predictions_of_record(record)


def user_jobs_page(
    user: str, limit: int, cursor: str | None
) -> tuple[list[tuple[WorkflowSpec, JobSnapshot, list[Prediction]]], str | None]:
    """A page of the user's jobs from the read model, newest first, with the next cursor
    (the first run id of the page's last job, as before); jobs of unknown workflows are
    left out. A page the read model cannot give (no row of the user's, a cursor that is
    no row's, the state database unreadable) is read from Dagster as before: jobs from
    before the read model are listed until the rebuild gives them rows."""
    specs = catalog().readable()
    try:
        found = job_rows().user_page(user, limit + 1, cursor)
    except (SQLAlchemyError, OSError) as exc:
        log.warning("job read model unreachable, listing from Dagster: %s", exc)
        found = None
    if not found:
        return _dagster_page(user, limit, cursor, specs)
    rows = found[:limit]
    next_cursor = rows[-1].first_run_id if len(found) > limit else None
    page = []
    for row in rows:
        record = row.job_record()
        newest = max(record.runs.values(), key=lambda r: (r.created_at, r.run_id), default=None)
        spec = specs.get(newest.tags.get(t.WORKFLOW, "")) if newest else None
        if spec is not None:
            page.append((spec, snapshot_of(record, spec), predictions_of_record(record)))
    return page, next_cursor


def _dagster_page(user: str, limit: int, cursor: str | None, specs: dict[str, WorkflowSpec]):
    """The page over GraphQL (2 or 3 requests) and one store query for its running jobs."""
    snapshots, next_cursor = gateway().jobs_page(user, limit, cursor, specs)
    page = [(specs[snap.workflow_id], snap) for snap in snapshots if snap.workflow_id in specs]
    running = [snap.job_id for spec, snap in page if job_state(spec, snap).status == "running"]
    rows = predictions_of(running) or {}
    return [(spec, snap, rows.get(snap.job_id, [])) for spec, snap in page], next_cursor
