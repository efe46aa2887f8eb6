"""The callbacks sensor: send a job's final event to its `callback_url`, signed.

A tick reads the due rows (wf_store.callbacks). A watched job that is now completed,
failed for good or cancelled gets its event queued; a queued event is POSTed as a
Standard Webhook (`webhook-id` stable across retries, `webhook-timestamp`,
`webhook-signature: v1,<base64 HMAC-SHA256>` with CALLBACK_SIGNING_SECRET). Every attempt
is recorded; anything but a 2xx is tried again with exponential backoff, up to
CALLBACK_MAX_ATTEMPTS.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from typing import Any

import dagster as dg
import httpx

from resources.state_database import StateDatabase
from wf_assets.asset_keys import asset_key_for
from wf_assets.checkpoints import recorded_checkpoint
from wf_assets.job_runs import load_job_state
from wf_core import outbound
from wf_core.clock import Clock
from wf_core.config import EngineSettings, SharedSettings, secret_value
from wf_core.job_ids import job_id_created_at
from wf_core.job_state import JobState
from wf_core.specs import WorkflowSpec
from wf_core.times import epoch_seconds_to_iso
from wf_core.webhook_signature import ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from wf_store.callbacks import PENDING, WATCHING, Callback, CallbackStore

CALLBACKS_SENSOR_NAME = "workflow_callbacks_sensor"
FINAL = {"completed": "job.completed", "failed": "job.failed", "cancelled": "job.cancelled"}
BATCH = 50
CHECK_SECONDS = 2.0
MAX_ATTEMPTS = 8
TIMEOUT_SECONDS = 10.0

Post = Callable[[str, bytes, dict[str, str]], int]


def job_document(
    instance: dg.DagsterInstance, spec: WorkflowSpec, job_id: str, state: JobState
) -> dict[str, Any]:
    """The final job as a webhook carries it: the execution document's fields (API.md) as
    the engine's instance knows them (each completed step's checkpoint, error, result)."""
    checkpoints = {}
    for index, step in enumerate(spec.steps):
        if step.name in state.completed:
            found = recorded_checkpoint(instance, asset_key_for(spec, step.name), job_id)
            checkpoints[str(index)] = {
                "step_name": step.name,
                "step_type": step.type,
                "status": "completed",
                "output": found.output if found else None,
                "started_at": found.started_at if found else None,
                "completed_at": found.completed_at if found else None,
            }
    last = str(len(spec.steps) - 1)
    result = checkpoints[last]["output"] if state.status == "completed" else None
    error = state.error or None
    names = [s.name for s in spec.steps]
    current = names.index(state.next_steps[0]) if state.next_steps else len(names) - 1
    try:
        created_at: str | None = epoch_seconds_to_iso(job_id_created_at(job_id))
    except ValueError:
        created_at = None
    return {
        "job_id": job_id,
        "workflow_id": spec.id,
        "id": state.latest.run_id if state.latest else None,
        "status": state.status,
        "current_step": current,
        "total_steps": len(spec.steps),
        "checkpoints": checkpoints,
        "can_retry": state.can_retry,
        "retry_count": state.retry_count,
        "created_at": created_at,
        "error_info": None
        if error is None
        else {
            "step": next(
                (i for i, s in enumerate(spec.steps) if s.name == state.failed_step), None
            ),
            "error_type": error.get("error_type"),
            "retryable": False,
            "message": error.get("message"),
        },
        "result": result,
    }


def http_post(
    url: str, body: bytes, headers: dict[str, str], settings: SharedSettings | None = None
) -> int:
    """POST one delivery to a destination checked now (its name may resolve elsewhere
    than at submit); its status code. Redirects are not followed."""
    settings = settings or SharedSettings.from_env()
    outbound.check_url(
        url,
        outbound.system_resolve,
        outbound.allowed_callback_hosts(settings.callback_allowed_hosts),
        allow_http=settings.allow_http_callbacks == "on",
    )
    response = httpx.post(
        url, content=body, headers=headers, timeout=TIMEOUT_SECONDS, follow_redirects=False
    )
    return response.status_code


def deliver(
    store: CallbackStore,
    row: Callback,
    document: dict[str, Any],
    secret: str,
    now: float,
    post: Post = http_post,
    max_attempts: int = MAX_ATTEMPTS,
) -> str:
    """Send one job's event once more; returns the row's new state."""
    event = row.event or "job.completed"
    webhook_id = f"msg_{row.job_id}_{event}"
    body = json.dumps(
        {"type": event, "timestamp": epoch_seconds_to_iso(now), "job": document}
    ).encode()
    timestamp = int(now)
    headers = {
        "content-type": "application/json",
        ID_HEADER: webhook_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret, webhook_id, timestamp, body),
        "user-agent": "media-workflows-callbacks/1",
    }
    attempt = len(store.attempts(row.job_id)) + 1
    try:
        status, error = post(row.url, body, headers), None
    except outbound.RefusedDestination as exc:
        status, error = None, f"refused: {exc}"[:500]
    except httpx.HTTPError as exc:
        status, error = None, f"{type(exc).__name__}: {exc}"[:500]
    if status is not None and not 200 <= status < 300:
        error = f"HTTP {status}"
    return store.record(row.job_id, webhook_id, attempt, status, error, max_attempts)


def evaluate_callbacks(
    context: dg.SensorEvaluationContext,
    specs: dict[str, WorkflowSpec],
    predictions: StateDatabase,
    clock: Clock = time.time,
    post: Post | None = None,
    settings: EngineSettings | None = None,
) -> dg.SkipReason:
    """One tick: queue the events of watched jobs that are final, deliver those due.
    `settings`: the code location's (read from the environment when not given)."""
    settings = settings or EngineSettings.from_env()
    post = post or functools.partial(http_post, settings=settings)
    secret = secret_value(settings.callback_signing_secret) or ""
    store = CallbackStore(predictions.store().engine, clock=clock)
    now = clock()
    if not secret:
        return dg.SkipReason("CALLBACK_SIGNING_SECRET is not set: no job webhooks")
    sent = 0
    for row in store.due(BATCH, now):
        spec = specs.get(row.workflow_id)
        if spec is None:
            store.check_later(row.job_id, now + 3600)
            continue
        state = load_job_state(context.instance, spec, row.job_id)
        if row.state == WATCHING:
            if state.status not in FINAL:
                store.check_later(row.job_id, now + CHECK_SECONDS)
                continue
            store.queue(row.job_id, FINAL[state.status])
            row = store.get(row.job_id) or row
        if row.state == PENDING:
            document = job_document(context.instance, spec, row.job_id, state)
            deliver(store, row, document, secret, now, post, settings.callback_max_attempts)
            sent += 1
    return dg.SkipReason(f"{sent} job webhooks sent")


def make_callbacks_sensor(
    specs: dict[str, WorkflowSpec],
    clock: Clock = time.time,
    settings: EngineSettings | None = None,
) -> dg.SensorDefinition:
    """The callbacks sensor over these workflows; tests pass a fake `clock`."""

    @dg.sensor(
        name=CALLBACKS_SENSOR_NAME,
        minimum_interval_seconds=2,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Sends signed webhooks to callback_url when a job ends.",
    )
    def callbacks_sensor(context: dg.SensorEvaluationContext, predictions: StateDatabase):
        return evaluate_callbacks(context, specs, predictions, clock, settings=settings)

    return callbacks_sensor
