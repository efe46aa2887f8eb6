"""The OpenAPI 3 document of the bridge's routes (API.md as a machine reads it)."""

from __future__ import annotations

from typing import Any

from bridge_api.openapi.ops import OPS_SCHEMAS, ops_paths
from bridge_api.openapi.schemas import SCHEMAS, integer, ref, string

Operation = dict[str, Any]

# Every error answers with the Error body; these headers say when to come back or how to log in.
ERROR_STATUSES: dict[int, tuple[str, dict[str, str]]] = {
    400: ("Bad request: a missing field, bad JSON, an undecodable file or a bad limit", {}),
    401: ("No token, or an invalid or expired one", {"WWW-Authenticate": "Bearer challenge"}),
    404: ("Unknown, or not the caller's", {}),
    402: ("Credits are on and the balance cannot cover the workflow's credits_cost", {}),
    409: ("The job is in the wrong state for this (e.g. retrying a running job)", {}),
    413: ("The file, or its pixel count, is too large", {}),
    415: ("The file is not a type this workflow takes", {}),
    422: ("Invalid options: an unknown step or an unsupported model", {}),
    429: ("Rate limited", {"Retry-After": "Seconds to wait"}),
    502: ("The orchestrator answered with an error", {}),
    503: (
        "The orchestrator (or the token keys, or the prediction store) cannot be reached",
        {"Retry-After": "Seconds"},
    ),
}
ORCHESTRATOR = (502, 503)
PROTECTED = (401, 503)  # 503: the signing keys could not be fetched


def json_content(schema: dict) -> dict:
    """A JSON body of `schema`."""
    return {"application/json": {"schema": schema}}


def ok(description: str, schema_name: str) -> dict:
    """A success response with a JSON body."""
    return {"description": description, "content": json_content(ref(schema_name))}


def error_response(status: int) -> dict:
    """The shared error response of one status."""
    description, headers = ERROR_STATUSES[status]
    response: dict[str, Any] = {"description": description, "content": json_content(ref("Error"))}
    if headers:
        response["headers"] = {
            name: {"description": text, "schema": string()} for name, text in headers.items()
        }
    return response


def operation(
    operation_id: str,
    summary: str,
    tag: str,
    success: dict[int, dict],
    errors: tuple[int, ...] = (),
    *,
    public: bool = False,
    parameters: list[dict] | None = None,
    **extra: Any,
) -> Operation:
    """One operation; a protected one also answers 401 and 503 and needs a bearer token."""
    statuses = sorted(set(errors) | (set() if public else set(PROTECTED)))
    responses = {str(code): body for code, body in success.items()}
    responses |= {str(s): {"$ref": f"#/components/responses/Error{s}"} for s in statuses}
    op: Operation = {"operationId": operation_id, "summary": summary, "tags": [tag]}
    if parameters:
        op["parameters"] = parameters
    if public:
        op["security"] = []
    return {**op, **extra, "responses": responses}


def param(name: str, where: str, schema: dict, description: str) -> dict:
    """A parameter; only path parameters are required."""
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "schema": schema,
        "description": description,
    }


JOB_ID = param("job_id", "path", string("uuid"), "The job id (a UUIDv7) from execute")
IDEMPOTENCY_KEY = param(
    "Idempotency-Key",
    "header",
    string(minLength=1, maxLength=255),
    "The same key from the same user within 24 h answers the first response again",
)


def credit_paths() -> dict[str, dict[str, Operation]]:
    """GET /credits and POST /admin/credits/grant (issue 15)."""
    grant_body = {"required": True, "content": json_content(ref("CreditGrant"))}
    return {
        "/credits": {
            "get": operation(
                "getCredits",
                "The caller's balance, reserved credits and ledger, newest first",
                "credits",
                {200: ok("The account", "CreditAccount")},
                (400,),
                parameters=[
                    param("limit", "query", integer(1, maximum=200, default=50), "Page size"),
                    param("cursor", "query", string(), "`next_cursor` of the previous page"),
                ],
            )
        },
        "/admin/credits/grant": {
            "post": operation(
                "grantCredits",
                "Add credits to a user's balance (admins only: anyone else gets 404)",
                "credits",
                {200: ok("Granted (0 if the reference was granted before)", "CreditGrantResult")},
                (400, 404, 422),
                requestBody=grant_body,
            )
        },
    }


def replicate_hook() -> Operation:
    """`POST /hooks/replicate`: signed by Replicate (Standard Webhooks), not by a user token."""
    signature_refused = {
        "description": "No signing secret configured, or a missing, invalid or stale signature",
        "content": json_content(ref("Error")),
    }
    headers = [
        {**param(name, "header", schema, text), "required": True}
        for name, schema, text in (
            ("webhook-id", string(), "The delivery's id: a repeat is a no-op"),
            ("webhook-timestamp", string(pattern="^[0-9]+$"), "Seconds since the epoch"),
        )
    ]
    intent = param("intent", "query", string(), "The intent id the prediction was created for")
    return operation(
        "receiveReplicateWebhook",
        "Replicate's webhook: a prediction's status, recorded once per webhook-id",
        "hooks",
        {204: {"description": "Recorded, or a repeat of one recorded"}, 401: signature_refused},
        (400, 503),
        public=True,
        parameters=[intent, *headers],
        requestBody={"required": True, "content": json_content(ref("ReplicatePrediction"))},
        security=[{"replicateSignature": []}],
    )


def paths() -> dict[str, dict[str, Operation]]:
    """Every route of the bridge, keyed by OpenAPI path and method."""
    execute_body = {
        "required": True,
        "content": {"multipart/form-data": {"schema": ref("ExecuteForm")}},
    }
    stream_ok = {
        "description": "Server-Sent Events `progress`, `checkpoint`, `error` and `complete`, "
        "each with an `id:`; a comment heartbeat at least every 15 s. The stream ends "
        "after `complete` or an `error` that is not retryable.",
        "content": {"text/event-stream": {"schema": ref("StreamEvent")}},
    }
    media_ok = {
        "description": "The file",
        "content": {"*/*": {"schema": string("binary")}},
    }
    return {
        "/workflows/list": {
            "get": operation(
                "listWorkflows",
                "The enabled workflows",
                "workflows",
                {200: ok("Every enabled workflow", "WorkflowList")},
                public=True,
            )
        },
        "/workflows/execute": {
            "post": operation(
                "executeWorkflow",
                "Check the file and options, then start a job",
                "jobs",
                {202: ok("The job started", "ExecuteAccepted")},
                (400, 402, 404, 409, 413, 415, 422, 429, *ORCHESTRATOR),
                parameters=[IDEMPOTENCY_KEY],
                requestBody=execute_body,
            )
        },
        "/workflows/execution/{job_id}": {
            "get": operation(
                "getExecution",
                "The job's status, checkpoints, error and result",
                "jobs",
                {200: ok("The execution document", "Execution")},
                (404, *ORCHESTRATOR),
                parameters=[JOB_ID],
            )
        },
        "/workflows/retry/{job_id}": {
            "post": operation(
                "retryJob",
                "Resume from the first step without a completed checkpoint",
                "jobs",
                {202: ok("The retry run started", "RetryAccepted")},
                (402, 404, 409, 429, *ORCHESTRATOR),
                parameters=[JOB_ID],
            )
        },
        "/workflows/cancel/{job_id}": {
            "post": operation(
                "cancelJob",
                "Stop a pending, running or pending_retry job",
                "jobs",
                {200: ok("The job is cancelled", "Cancelled")},
                (404, 409, *ORCHESTRATOR),
                parameters=[JOB_ID],
            )
        },
        "/workflows/jobs": {
            "get": operation(
                "listJobs",
                "The caller's jobs, newest first",
                "jobs",
                {200: ok("A page of jobs", "JobList")},
                (400, *ORCHESTRATOR),
                parameters=[
                    param("limit", "query", integer(1, maximum=100, default=20), "Page size"),
                    param("cursor", "query", string(), "`next_cursor` of the previous page"),
                ],
            )
        },
        "/jobs/{job_id}/stream": {
            "get": operation(
                "streamJob",
                "The job's history and live progress as Server-Sent Events",
                "jobs",
                {200: stream_ok},
                (404, *ORCHESTRATOR),
                parameters=[
                    JOB_ID,
                    param("Last-Event-ID", "header", string(), "Replay only what came after"),
                ],
                # A browser's EventSource cannot send headers, so the token may come in the query.
                security=[{"bearerAuth": []}, {"accessTokenQuery": []}],
            )
        },
        "/hooks/replicate": {"post": replicate_hook()},
        **credit_paths(),
        **ops_paths(operation, param, ok),  # GET /metrics, /admin/jobs* (issue 14)
        "/healthz": {
            "get": operation(
                "healthz",
                "Liveness, with the orchestrator's reachability",
                "meta",
                {200: ok("Up", "Health"), 503: ok("A dependency is unavailable", "Health")},
                public=True,
            )
        },
        "/openapi.json": {
            "get": operation(
                "getOpenapi",
                "This document",
                "meta",
                {200: {"description": "OpenAPI 3.0", "content": json_content({"type": "object"})}},
                public=True,
            )
        },
        "/media/{filename}": {
            "get": operation(
                "getMedia",
                "A file of local media storage",
                "meta",
                {200: media_ok},
                (404,),
                public=True,
                parameters=[param("filename", "path", string(), "Path under MEDIA_DIR")],
            )
        },
    }


def openapi_document() -> dict:
    """The document served at /openapi.json."""
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Media workflows bridge",
            "version": "1.0",
            "description": "The bridge API of API.md: errors are always "
            '`{"error": {"code", "message"}}` JSON.',
        },
        "tags": [
            {"name": name} for name in ("workflows", "jobs", "hooks", "meta", "credits", "admin")
        ],
        "paths": paths(),
        "security": [{"bearerAuth": []}],
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "A Supabase access token",
                },
                "accessTokenQuery": {"type": "apiKey", "in": "query", "name": "access_token"},
                "replicateSignature": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "webhook-signature",
                    "description": "`v1,<base64 HMAC-SHA256>` of `<webhook-id>.<webhook-"
                    "timestamp>.<raw body>` with REPLICATE_WEBHOOK_SECRET (Standard Webhooks)",
                },
            },
            "schemas": {**SCHEMAS, **OPS_SCHEMAS},
            "responses": {f"Error{s}": error_response(s) for s in ERROR_STATUSES},
        },
    }
