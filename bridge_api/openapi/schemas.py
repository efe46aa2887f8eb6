"""The bodies of API.md as OpenAPI 3.0 schemas (`components.schemas` of /openapi.json)."""

from __future__ import annotations

from typing import Any

from wf_core.errors import PERMANENT_TYPES, RETRYABLE_TYPES

# The status words of API.md, in its order: they are the frontend's contract.
JOB_STATUSES = ["pending", "running", "completed", "failed", "pending_retry", "cancelled"]
CHECKPOINT_STATUSES = ["pending", "running", "completed", "failed_retryable", "failed"]
# The error words come from the one taxonomy the engine raises.
ERROR_TYPES = sorted(RETRYABLE_TYPES) + sorted(PERMANENT_TYPES)

Schema = dict[str, Any]


def ref(name: str) -> Schema:
    """A reference to one of `SCHEMAS`."""
    return {"$ref": f"#/components/schemas/{name}"}


def string(fmt: str | None = None, **extra: Any) -> Schema:
    """A string, optionally of an OpenAPI format (uuid, date-time, uri, binary)."""
    return {"type": "string", **({"format": fmt} if fmt else {}), **extra}


def integer(minimum: int | None = None, **extra: Any) -> Schema:
    """An integer, optionally bounded below."""
    return {"type": "integer", **({"minimum": minimum} if minimum is not None else {}), **extra}


def nullable(schema: Schema) -> Schema:
    """`schema` or null (an enum must list null itself, as OpenAPI 3.0.3 says)."""
    if "enum" in schema:
        schema = {**schema, "enum": [*schema["enum"], None]}
    return {**schema, "nullable": True}


def obj(properties: dict[str, Schema], required: list[str] | None = None, **extra: Any) -> Schema:
    """An object; every property is required unless `required` says otherwise."""
    required = list(properties) if required is None else required
    return {"type": "object", "properties": properties, "required": required, **extra}


def map_of(values: Schema) -> Schema:
    """An object with arbitrary keys, each holding `values`."""
    return {"type": "object", "additionalProperties": values}


ANY_OBJECT: Schema = {"type": "object", "additionalProperties": True}
TIME = nullable(string("date-time"))

ERROR = obj(
    {
        "error": obj(
            {"code": string(description="snake_case, e.g. job_not_found"), "message": string()},
            description="Extra fields may explain more, e.g. `field` for invalid options.",
        )
    }
)

WORKFLOW = obj(
    {
        "id": string(),
        "name": string(),
        "description": string(),
        "icon": string(),
        "category": string(),
        "preview_video": nullable(string()),
        "preview_thumbnail": nullable(string()),
        "enabled": {"type": "boolean"},
        "default_prompts": map_of(string()),
        "supported_models": map_of({"type": "array", "items": string()}),
        "steps": {"type": "array", "items": obj({"name": string(), "description": string()})},
        "estimated_duration_seconds": integer(0),
        "credits_cost": integer(0),
        "spec_version": string(description="The version (content digest) a new job runs on"),
    }
)

PROVIDER_STATUSES = ["starting", "processing"]

PROVIDER = obj(
    {
        "name": string(description="The model provider, e.g. replicate"),
        "prediction_id": nullable(string(description="Null until the provider has answered")),
        "status": string(enum=PROVIDER_STATUSES),
        "progress": integer(0, maximum=100),
    },
    required=["name", "prediction_id", "status"],
    description="A running step's prediction at its provider (progress when it reports one).",
)

CHECKPOINT = obj(
    {
        "step_name": string(),
        "step_type": string(enum=["input", "generation", "transform"]),
        "status": string(enum=CHECKPOINT_STATUSES),
        "output": ANY_OBJECT,
        "started_at": TIME,
        "completed_at": TIME,
        "error": nullable(string()),
        "error_type": nullable(string(enum=ERROR_TYPES)),
        "retry_count": integer(0),
        "last_attempt": TIME,
        "provider": PROVIDER,
    },
    required=["step_name", "step_type", "status"],
)

ERROR_INFO = obj(
    {
        "step": nullable(integer(0)),
        "error_type": nullable(string(enum=ERROR_TYPES)),
        "retryable": {"type": "boolean"},
        "message": nullable(string()),
        "next_retry_at": TIME,
    }
)

JOB_SUMMARY_FIELDS: dict[str, Schema] = {
    "id": nullable(string(description="The latest Dagster run id")),
    "job_id": string("uuid"),
    "workflow_id": string(),
    "status": string(enum=JOB_STATUSES),
    "current_step": integer(0),
    "total_steps": integer(1),
    # Inline, not a $ref: OpenAPI 3.0 ignores `nullable` beside a $ref.
    "error_info": nullable(ERROR_INFO),
    "result": nullable({**ANY_OBJECT, "description": "The last step's output once completed"}),
    "can_retry": {"type": "boolean"},
    "retry_count": integer(0),
    "created_at": TIME,
    "updated_at": TIME,
}

SCHEMAS: dict[str, Schema] = {
    "Error": ERROR,
    "Workflow": WORKFLOW,
    "WorkflowList": obj({"workflows": {"type": "array", "items": ref("Workflow")}}),
    "ExecuteForm": obj(
        {
            "workflow_id": string(),
            "file": string("binary", description="The input image or video"),
            "options": string(
                description='A JSON string: {"models": {"<step>": "<model id>"}, '
                '"prompts": {"<step>": "<text>"}}',
            ),
            "callback_url": string(
                "uri",
                description="https URL (http only to loopback in development) that receives "
                "the job's completed, failed and cancelled events as signed webhooks",
            ),
        },
        required=["workflow_id", "file"],
    ),
    "ExecuteAccepted": obj(
        {
            "job_id": string("uuid"),
            "execution_id": string(),
            "status": string(enum=["running"]),
            "stream_url": string(),
            "spec_version": string(description="The spec version the job is pinned to"),
        }
    ),
    "Checkpoint": CHECKPOINT,
    "ErrorInfo": ERROR_INFO,
    "JobSummary": obj(JOB_SUMMARY_FIELDS),
    "Execution": obj(
        {
            **JOB_SUMMARY_FIELDS,
            "checkpoints": map_of(ref("Checkpoint")),
            "spec_version": string(description="The spec version the job runs on"),
        },
        description="`checkpoints` is keyed by step index as a string.",
    ),
    "JobList": obj(
        {"jobs": {"type": "array", "items": ref("JobSummary")}, "next_cursor": nullable(string())}
    ),
    "RetryAccepted": obj(
        {"message": string(), "execution_id": string(), "resume_from_step": integer(0)}
    ),
    "Cancelled": obj(
        {"job_id": string("uuid"), "status": string(enum=["cancelled"]), "message": string()}
    ),
    "StreamEvent": obj(
        {
            "id": string(description="Send back as Last-Event-ID to replay what came after"),
            "event": string(enum=["progress", "checkpoint", "error", "complete"]),
            "data": string(description="JSON: see API.md for each event's fields"),
        },
        description="One Server-Sent Event.",
    ),
    "ReplicatePrediction": obj(
        {"id": string(minLength=1), "status": string(minLength=1)},
        additionalProperties=True,
        description="Replicate's prediction object, as its webhooks send it.",
    ),
    # Credits (issue 15): GET /credits and POST /admin/credits/grant.
    "CreditEntry": obj(
        {
            "job_id": nullable(string(description="null for a grant")),
            "step": nullable(string(description="The step captured, or the hold (#1, #2)")),
            "kind": string(enum=["reserve", "capture", "release", "grant"]),
            "amount": integer(1),
            "reason": nullable(string()),
            "at": string("date-time"),
        }
    ),
    "CreditAccount": obj(
        {
            "balance": integer(0, description="What may be spent now (holds excluded)"),
            "reserved": integer(0, description="Held for jobs in flight"),
            "credits_enabled": {"type": "boolean"},
            "entries": {"type": "array", "items": ref("CreditEntry")},
            "next_cursor": nullable(string()),
        }
    ),
    "CreditGrant": obj(
        {
            "user_id": string(minLength=1, maxLength=200),
            "amount": integer(1, maximum=1_000_000_000),
            "reason": string(),
            "reference": string(minLength=1, description="A grant with one reference counts once"),
        },
        required=["user_id", "amount"],
    ),
    "CreditGrantResult": obj(
        {"user_id": string(), "granted": integer(0), "balance": integer(0), "reserved": integer(0)}
    ),
    "Health": obj(
        {
            "status": string(enum=["ok", "degraded"]),
            "orchestrator": obj({"reachable": {"type": "boolean"}}),
            "dependencies": map_of(string(enum=["ok", "unavailable", "not_configured"])),
            "auth_mode": string(),
        }
    ),
}
