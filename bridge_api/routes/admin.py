"""Admin routes (API.md, second round): list jobs by filter, bulk retry or cancel, history.

Only a token whose `app_metadata.role` is `admin` sees them; anyone else gets the same
404 as a route that does not exist.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from flask import Blueprint, g, jsonify, request

from bridge_api.http.auth import current_user, load_user
from bridge_api.http.errors import ApiError
from bridge_api.jobs import bulk, history
from bridge_api.jobs.filters import FILTER_FIELDS, parse_filter
from wf_core.job_ids import is_job_id

bp = Blueprint("admin", __name__, url_prefix="/admin")


def is_admin(claims: dict[str, Any]) -> bool:
    """Whether verified token claims carry the admin role (Supabase's app_metadata)."""
    meta = claims.get("app_metadata")
    return isinstance(meta, dict) and meta.get("role") == "admin"


@bp.before_request
def _admins_only() -> None:
    load_user()
    if not is_admin(g.get("auth_claims") or {}):
        raise ApiError(404, "not_found", "No such route")


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
    jobs = bulk.find_jobs(where, limit, _cursor(request.args.get("cursor")))
    last = jobs[-1] if len(jobs) == limit else None
    next_cursor = f"{last.created_at!r}_{last.job_id}" if last else None
    return jsonify({"jobs": [bulk.indexed_view(j) for j in jobs], "next_cursor": next_cursor})


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
    limit = _limit(body.get("limit"), bulk.MAX_BULK, bulk.MAX_BULK)
    result = bulk.bulk(action, where, current_user(), dry_run, limit)
    return jsonify(asdict(result))


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
    entries = history.history(job_id) if is_job_id(job_id) else None
    if entries is None:
        raise ApiError(404, "job_not_found", f"No job {job_id}")
    return jsonify({"job_id": job_id, "events": entries})
