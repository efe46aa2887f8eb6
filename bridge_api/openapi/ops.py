"""The operator routes in the OpenAPI document (issue 14): GET /metrics and /admin/jobs*."""

from __future__ import annotations

from typing import Any

from bridge_api.openapi.schemas import JOB_STATUSES, integer, nullable, obj, ref, string

JOB_FILTER: dict[str, Any] = {
    "status": string(enum=JOB_STATUSES),
    "error_type": string(),
    "workflow_id": string(),
    "user_id": string(),
    "since": string("date-time", description="Jobs created at or after"),
    "until": string("date-time", description="Jobs created before"),
}
OPS_SCHEMAS: dict[str, Any] = {
    "IndexedJob": obj(
        {
            "job_id": string(),
            "workflow_id": string(),
            "user_id": string(),
            "status": string(enum=JOB_STATUSES),
            "error_type": nullable(string()),
            "failed_step": nullable(string()),
            "attempt": integer(1),
            "run_id": nullable(string()),
            "created_at": string("date-time"),
            "updated_at": string("date-time"),
        }
    ),
    "AdminJobList": obj(
        {
            "jobs": {"type": "array", "items": ref("IndexedJob")},
            "next_cursor": nullable(string()),
        }
    ),
    "BulkAction": {
        "type": "object",
        "properties": {
            **JOB_FILTER,
            "dry_run": {"type": "boolean", "description": "Only count and list the matches"},
            "limit": integer(1, maximum=1000),
        },
        "description": "At least one filter field is required.",
    },
    "BulkResult": obj(
        {
            "matched": integer(0),
            "acted": integer(0),
            "job_ids": {"type": "array", "items": string()},
            "skipped": {
                "type": "array",
                "items": obj({"job_id": string(), "reason": string()}),
            },
        }
    ),
    "JobHistory": obj(
        {
            "job_id": string(),
            "events": {
                "type": "array",
                "items": obj(
                    {"kind": string(enum=["run", "error", "checkpoint", "prediction"])},
                    additionalProperties=True,
                ),
            },
        }
    ),
}


def ops_paths(operation, param, ok) -> dict[str, dict[str, Any]]:
    """The paths, built with openapi.py's own helpers (passed in: no import cycle)."""
    filters = [param(name, "query", schema, name) for name, schema in JOB_FILTER.items()]
    page = [
        param("limit", "query", integer(1, maximum=500, default=50), "Page size"),
        param("cursor", "query", string(), "`next_cursor` of the previous page"),
    ]
    bulk_body = {
        "required": True,
        "content": {"application/json": {"schema": ref("BulkAction")}},
    }
    metrics_ok = {
        "description": "Prometheus text exposition format",
        "content": {"text/plain": {"schema": string()}},
    }

    def bulk(operation_id: str, what: str) -> dict[str, Any]:
        return operation(
            operation_id,
            f"{what} every job matching the filter (admins only: anyone else gets 404)",
            "admin",
            {200: ok("What matched and what was done", "BulkResult")},
            (400, 404, 502),
            requestBody=bulk_body,
        )

    return {
        "/metrics": {
            "get": operation(
                "getMetrics",
                "Every metric in Prometheus' text format (bearer METRICS_TOKEN when set)",
                "meta",
                {200: metrics_ok},
                (401,),
            )
        },
        "/admin/jobs": {
            "get": operation(
                "adminListJobs",
                "Every user's jobs matching the filter, newest first (admins only)",
                "admin",
                {200: ok("A page of jobs", "AdminJobList")},
                (400, 404),
                parameters=[*filters, *page],
            )
        },
        "/admin/jobs/retry": {"post": bulk("adminRetryJobs", "Retry")},
        "/admin/jobs/cancel": {"post": bulk("adminCancelJobs", "Cancel")},
        "/admin/jobs/{job_id}/history": {
            "get": operation(
                "adminJobHistory",
                "A job's runs, errors, checkpoints and predictions, oldest first (admins only)",
                "admin",
                {200: ok("The history", "JobHistory")},
                (404, 502),
                parameters=[param("job_id", "path", string(), "The job id")],
            )
        },
    }
