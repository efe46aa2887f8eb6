"""Admin routes (API.md, second round): list jobs by filter, bulk retry or cancel, history.

Only a token whose `app_metadata.role` is `admin` sees them; anyone else gets the same
404 as a route that does not exist.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, g, jsonify, request

from bridge_api import admin_ops
from bridge_api.auth import current_user, load_user
from bridge_api.errors import ApiError
from wf_core.job_ids import is_job_id
from wf_core.times import iso_to_epoch_seconds
from wf_store.job_index import JobFilter

bp = Blueprint("admin", __name__, url_prefix="/admin")
FILTER_FIELDS = ("status", "error_type", "workflow_id", "user_id", "since", "until")
JOB_STATUSES = ("pending", "running", "completed", "failed", "pending_retry", "cancelled")


def is_admin(claims: dict[str, Any]) -> bool:
    """Whether verified token claims carry the admin role (Supabase's app_metadata)."""
    meta = claims.get("app_metadata")
    return isinstance(meta, dict) and meta.get("role") == "admin"


@bp.before_request
def _admins_only() -> None:
    load_user()
    if not is_admin(g.get("auth_claims") or {}):
        raise ApiError(404, "not_found", "No such route")


def _time(name: str, value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        return iso_to_epoch_seconds(str(value))
    except ValueError:
        raise ApiError(400, "invalid_filter", f"{name} must be an ISO-8601 time") from None


def parse_filter(values: dict[str, Any]) -> JobFilter:
    """A JobFilter from query arguments or a JSON body; 400 on a bad value."""
    for name in ("status", "error_type", "workflow_id", "user_id"):
        if values.get(name) is not None and not isinstance(values[name], str):
            raise ApiError(400, "invalid_filter", f"{name} must be a string")
    status = values.get("status") or None
    if status is not None and status not in JOB_STATUSES:
        raise ApiError(400, "invalid_filter", f"status must be one of {', '.join(JOB_STATUSES)}")
    return JobFilter(
        status=status,
        error_type=values.get("error_type") or None,
        workflow_id=values.get("workflow_id") or None,
        user_id=values.get("user_id") or None,
        since=_time("since", values.get("since")),
        until=_time("until", values.get("until")),
    )


def _limit(raw: Any, default: int, most: int) -> int:
    if raw is None or raw == "":
        return default
    if isinstance(raw, bool):
        raise ApiError(400, "invalid_limit", "limit must be a whole number")
    try:
        limit = int(raw)
    except (TypeError, ValueError):
        raise ApiError(400, "invalid_limit", "limit must be a whole number") from None
    if not 1 <= limit <= most:
        raise ApiError(400, "invalid_limit", f"limit must be between 1 and {most}")
    return limit


def _cursor(raw: str | None) -> tuple[float, str] | None:
    if not raw:
        return None
    at, _, job_id = raw.partition("_")
    try:
        return float(at), job_id
    except ValueError:
        raise ApiError(400, "invalid_cursor", "cursor is not one this route gave") from None


@bp.get("/jobs")
def list_jobs():
    """Jobs of every user matching the filter, newest first, a page at a time."""
    where = parse_filter(request.args.to_dict())
    limit = _limit(request.args.get("limit"), 50, 500)
    jobs = admin_ops.find_jobs(where, limit, _cursor(request.args.get("cursor")))
    last = jobs[-1] if len(jobs) == limit else None
    next_cursor = f"{last.created_at!r}_{last.job_id}" if last else None
    return jsonify({"jobs": [admin_ops.indexed_view(j) for j in jobs], "next_cursor": next_cursor})


def _bulk(action: str):
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "the body must be a JSON object")
    where = parse_filter(body)
    if all(getattr(where, name) is None for name in FILTER_FIELDS):
        raise ApiError(400, "empty_filter", "name at least one filter field")
    dry_run = body.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise ApiError(400, "invalid_filter", "dry_run must be true or false")
    limit = _limit(body.get("limit"), admin_ops.MAX_BULK, admin_ops.MAX_BULK)
    result = admin_ops.bulk(action, where, current_user(), dry_run, limit)
    return jsonify(admin_ops.asdict(result))


@bp.post("/jobs/retry")
def retry_jobs():
    """Retry every failed or pending_retry job matching the filter (`dry_run`: count)."""
    return _bulk("retry")


@bp.post("/jobs/cancel")
def cancel_jobs():
    """Cancel every pending, running or pending_retry job matching the filter."""
    return _bulk("cancel")


@bp.get("/jobs/<job_id>/history")
def job_history(job_id: str):
    """The job's runs, errors, checkpoints and predictions, oldest first."""
    entries = admin_ops.history(job_id) if is_job_id(job_id) else None
    if entries is None:
        raise ApiError(404, "job_not_found", f"No job {job_id}")
    return jsonify({"job_id": job_id, "events": entries})
