"""Which jobs an operator means: a JobFilter from query arguments, a JSON body or
`wf-admin`'s options."""

from __future__ import annotations

from typing import Any

from bridge_api.http.errors import ApiError
from wf_core.times import iso_to_epoch_seconds
from wf_store.job_rows import JobFilter

FILTER_FIELDS = ("status", "error_type", "workflow_id", "user_id", "since", "until")
JOB_STATUSES = ("pending", "running", "completed", "failed", "pending_retry", "cancelled")


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
