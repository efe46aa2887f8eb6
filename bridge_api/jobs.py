"""Execute, inspect, retry, cancel and list jobs (API.md's /workflows/* job routes)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from flask import Blueprint, current_app, jsonify, request

from bridge_api import job_actions
from bridge_api.auth import current_user, require_user
from bridge_api.callbacks import forget_job, requested_callback, watch_job
from bridge_api.catalog import SpecCatalog
from bridge_api.credits import reserve_for_job, settle_job
from bridge_api.dagster_gateway import DagsterGateway, JobSnapshot
from bridge_api.errors import ApiError
from bridge_api.execution_view import execution_view, job_state
from bridge_api.idempotency import idempotent
from bridge_api.limits import execute_limit, limiter, retry_limit, user_key
from bridge_api.predictions import prediction_store, predictions_of
from bridge_api.uploads import inspect_upload
from wf_core import tags as t
from wf_core.control import JobStateError
from wf_core.job_ids import is_job_id, new_job_id
from wf_core.run_config import OptionsError, build_run_config, validate_options
from wf_core.specs import WorkflowSpec, spec_digest
from wf_store.spec_versions import SpecVersions
from wf_store.uploads import UploadStore, uploads_in_db

bp = Blueprint("jobs", __name__, url_prefix="/workflows")


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


def _form_options(spec: WorkflowSpec) -> dict:
    raw = request.form.get("options")
    if raw is None or raw.strip() == "":
        return validate_options(spec, None)
    try:
        options = json.loads(raw)
    except (ValueError, RecursionError):  # deeply nested JSON exhausts the parser's stack
        raise ApiError(400, "invalid_json", "options must be a JSON string") from None
    try:
        return validate_options(spec, options)
    except OptionsError as exc:
        raise ApiError(422, "invalid_options", str(exc), field=exc.field) from None


def _hostile_name(name: str) -> bool:
    """A name with a path, a parent reference or control characters is refused outright."""
    return any(c in name for c in "/\\\0") or ".." in name or any(ord(c) < 32 for c in name)


def _store_input(job_id: str, data: bytes, fmt: str) -> Path | str:
    if uploads_in_db():  # run workers on other hosts: the database, not this disk
        return UploadStore(prediction_store().engine).put(job_id, data, fmt)
    folder = Path(current_app.config["UPLOAD_DIR"]) / job_id
    folder.mkdir(parents=True, exist_ok=False)
    path = folder / f"input.{fmt}"
    path.write_bytes(data)
    return path


@bp.post("/execute")
@require_user
@limiter.limit(execute_limit, key_func=user_key)
def execute():
    """Check the request and the file, then add the partition and submit the run
    (once per Idempotency-Key: a repeat answers the first response again)."""
    return idempotent(_start_job)


def _start_job() -> tuple[dict, int]:
    workflow_id = request.form.get("workflow_id")
    if not workflow_id:
        raise ApiError(400, "missing_field", "workflow_id is required")
    spec = catalog().get(workflow_id)
    if spec is None or not spec.enabled:
        raise ApiError(404, "workflow_not_found", f"No workflow {workflow_id!r}")
    if workflow_id not in catalog().runnable() and workflow_id not in catalog().runnable(True):
        # A file the orchestrator has not loaded yet (it reloads within seconds).
        raise ApiError(
            503,
            "workflow_loading",
            f"Workflow {workflow_id!r} is being loaded; try again shortly",
            headers={"Retry-After": "2"},
        )
    options = _form_options(spec)
    upload = request.files.get("file")
    if upload is None:
        raise ApiError(400, "missing_file", "file is required")
    if _hostile_name(upload.filename or ""):
        raise ApiError(400, "invalid_filename", "the file name must not contain a path")
    checked = inspect_upload(upload.stream, upload.filename, current_app.config["MAX_UPLOAD_BYTES"])
    if checked.kind != "image":
        raise ApiError(415, "unsupported_type", f"{spec.name} takes an image, not a {checked.kind}")
    callback_url = requested_callback()
    job_id = new_job_id()
    reserve_for_job(spec, job_id)  # 402 here holds nothing
    try:
        watch_job(spec, job_id, callback_url)
        path = _store_input(job_id, checked.data, checked.format)
    except Exception:
        settle_job(job_id, (), "not_started")
        forget_job(job_id, callback_url)
        raise
    run_config = build_run_config(spec, options, str(path))
    versions = SpecVersions(prediction_store())
    try:
        # The job runs on this version of its spec, whatever happens to the file later.
        pin = versions.pin(job_id, spec, current_user(), run_config)
        tags = {**t.job_tags(spec.id, job_id, current_user(), "bridge")}
        tags[t.SPEC_VERSION] = pin.digest
        gateway().add_partition(job_id)
        try:
            # Launched, or known not to be: a lost answer is looked up (gateway.launch).
            run_id = gateway().launch(spec.job_name, run_config, tags)
        except Exception:
            _forget_partition(job_id)
            raise
    except Exception:
        _unpin(versions, job_id)
        if isinstance(path, str):
            UploadStore(prediction_store().engine).delete(job_id)
        else:
            shutil.rmtree(path.parent, ignore_errors=True)
        settle_job(job_id, (), "not_started")
        forget_job(job_id, callback_url)
        raise
    body = {
        "job_id": job_id,
        "execution_id": run_id,
        "status": "running",
        "stream_url": f"/jobs/{job_id}/stream",
        "spec_version": pin.digest,
    }
    return body, 202


def _unpin(versions: SpecVersions, job_id: str) -> None:
    try:
        versions.unpin(job_id)
    except Exception:  # the state database is down: the owner check closes the pin
        current_app.logger.warning("job %s: pin left behind", job_id)


def _forget_partition(job_id: str) -> None:
    try:
        gateway().delete_partition(job_id)
    except ApiError:
        # Dagster is unreachable: a partition without runs is harmless (archive drops it).
        current_app.logger.warning("partition %s left behind: Dagster unreachable", job_id)


@bp.get("/execution/<job_id>")
@require_user
def execution(job_id: str):
    """The job's status, checkpoints, error and result."""
    spec, snapshot = load_owned_job(job_id)
    rows: list = []
    if job_state(spec, snapshot).status == "running":  # only a running step waits on one
        rows = (predictions_of([job_id]) or {}).get(job_id, [])
    settings = current_app.extensions["retry_settings"]
    view = execution_view(spec, snapshot, settings, rows)
    view["spec_version"] = spec_digest(spec)
    return jsonify(view)


@bp.post("/retry/<job_id>")
@require_user
@limiter.limit(retry_limit, key_func=user_key)
def retry(job_id: str):
    """Resume from the first step without a checkpoint."""
    spec, snapshot = load_owned_job(job_id)
    try:
        run_id, plan = job_actions.retry(spec, snapshot, launched_by="manual_retry")
    except JobStateError as exc:
        status = job_state(spec, snapshot).status
        raise ApiError(409, "invalid_state", str(exc), job_status=status) from None
    body = {
        "message": "Workflow retry started",
        "execution_id": run_id,
        "resume_from_step": plan.resume_from_step,
    }
    return jsonify(body), 202


@bp.post("/cancel/<job_id>")
@require_user
def cancel(job_id: str):
    """Stop a pending, running or pending_retry job; nothing retries it afterwards."""
    spec, snapshot = load_owned_job(job_id)
    try:
        return jsonify(job_actions.cancel(spec, snapshot, current_user()))
    except JobStateError as exc:
        status = job_state(spec, snapshot).status
        raise ApiError(409, "invalid_state", str(exc), job_status=status) from None


@bp.get("/jobs")
@require_user
def list_jobs():
    """The caller's jobs, newest first, a page at a time."""
    try:
        limit = int(request.args.get("limit", 20))
    except ValueError:
        raise ApiError(400, "invalid_limit", "limit must be a whole number") from None
    if not 1 <= limit <= 100:
        raise ApiError(400, "invalid_limit", "limit must be between 1 and 100")
    cursor = request.args.get("cursor") or None
    specs = catalog().readable()
    # A constant number of GraphQL requests, whatever the page's length (2 or 3).
    snapshots, next_cursor = gateway().jobs_page(current_user(), limit, cursor, specs)
    settings = current_app.extensions["retry_settings"]
    page = [(specs[snap.workflow_id], snap) for snap in snapshots if snap.workflow_id in specs]
    # One store query for the page: the running jobs' predictions (their `updated_at`).
    running = [snap.job_id for spec, snap in page if job_state(spec, snap).status == "running"]
    rows = predictions_of(running) or {}
    jobs = []
    for spec, snapshot in page:
        summary = execution_view(spec, snapshot, settings, rows.get(snapshot.job_id, []))
        summary.pop("checkpoints")
        jobs.append(summary)
    return jsonify({"jobs": jobs, "next_cursor": next_cursor})
