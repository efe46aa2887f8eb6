"""Execute, inspect, retry, cancel and list jobs (API.md's /workflows/* job routes)."""

from __future__ import annotations

import json

from flask import Blueprint, current_app, jsonify, request

from bridge_api.http.auth import current_user, require_user
from bridge_api.http.errors import ApiError
from bridge_api.http.idempotency import idempotent
from bridge_api.http.limits import execute_limit, limiter, retry_limit, user_key
from bridge_api.jobs import actions, start
from bridge_api.jobs.callbacks import requested_callback
from bridge_api.jobs.execution_view import execution_view, job_state
from bridge_api.jobs.lookup import load_owned_job, load_owned_view, user_jobs_page
from bridge_api.jobs.uploads import inspect_upload
from wf_core.control import JobStateError
from wf_core.run_config import OptionsError, validate_options
from wf_core.specs import WorkflowSpec, spec_digest

bp = Blueprint("jobs", __name__, url_prefix="/workflows")


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
    spec = start.runnable_spec(workflow_id)
    options = _form_options(spec)
    upload = request.files.get("file")
    if upload is None:
        raise ApiError(400, "missing_file", "file is required")
    if _hostile_name(upload.filename or ""):
        raise ApiError(400, "invalid_filename", "the file name must not contain a path")
    checked = inspect_upload(upload.stream, upload.filename, current_app.config["MAX_UPLOAD_BYTES"])
    if checked.kind != "image":
        raise ApiError(415, "unsupported_type", f"{spec.name} takes an image, not a {checked.kind}")
    started = start.start_job(spec, options, checked, requested_callback(), current_user())
    body = {
        "job_id": started.job_id,
        "execution_id": started.run_id,
        "status": "running",
        "stream_url": f"/jobs/{started.job_id}/stream",
        "spec_version": started.spec_version,
    }
    return body, 202


@bp.get("/execution/<job_id>")
@require_user
def execution(job_id: str):
    """The job's status, checkpoints, error and result."""
    spec, snapshot, rows = load_owned_view(job_id)
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
        run_id, plan = actions.retry(spec, snapshot, launched_by="manual_retry")
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
        return jsonify(actions.cancel(spec, snapshot, current_user()))
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
    settings = current_app.extensions["retry_settings"]
    jobs = []
    # From the read model: one indexed query for the page (two after a cursor), no GraphQL.
    page, next_cursor = user_jobs_page(current_user(), limit, cursor)
    for spec, snapshot, rows in page:
        summary = execution_view(spec, snapshot, settings, rows, checkpoints=False)
        summary.pop("checkpoints")
        jobs.append(summary)
    return jsonify({"jobs": jobs, "next_cursor": next_cursor})
