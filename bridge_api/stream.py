"""`GET /jobs/<job_id>/stream`: the job's history and live progress as Server-Sent Events.

Events are derived from what Dagster recorded (step logs, checkpoints, failed runs),
and each id is made of the recorded time, so the same history always gives the
same ids: a reconnect with `Last-Event-ID` replays exactly what was missed.
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, current_app, request, stream_with_context

from bridge_api.auth import require_user
from bridge_api.dagster_gateway import DagsterGateway, JobSnapshot
from bridge_api.execution_view import job_state, next_retry_at
from bridge_api.jobs import load_owned_job
from wf_assets import tags as t
from wf_assets.job_state import ACTIVE
from wf_assets.specs import WorkflowSpec

bp = Blueprint("stream", __name__)
RANKS = {"progress": 0, "checkpoint": 1, "error": 2, "complete": 3}
Key = tuple[int, int, int, int]


def _ms(value: str | float | None) -> int:
    if value is None:
        return 0
    if isinstance(value, str) and not value.replace(".", "").isdigit():
        return int(datetime.fromisoformat(value).timestamp() * 1000)
    return int(float(value) * (1 if float(value) > 1e11 else 1000))


def event_id(key: Key) -> str:
    """The SSE id of an event key."""
    return "-".join(str(part) for part in key)


def parse_event_id(value: str | None) -> Key | None:
    """An SSE id back into its key (None if absent or malformed)."""
    try:
        parts = tuple(int(p) for p in (value or "").split("-"))
    except ValueError:
        return None
    return parts if len(parts) == 4 else None  # type: ignore[return-value]


class JobEvents:
    """Collects a job's events, reading each run's step logs incrementally."""

    def __init__(self, gateway: DagsterGateway, spec: WorkflowSpec) -> None:
        self.gateway = gateway
        self.spec = spec
        self.cursors: dict[str, str | None] = {}
        self.progress: list[tuple[Key, dict]] = []
        self.ops = {spec.op_name(s.name): i for i, s in enumerate(spec.steps)}

    def _read_logs(self, snapshot: JobSnapshot) -> None:
        for run in snapshot.runs:
            if self.cursors.get(run.run_id) == "done":
                continue
            events, cursor = self.gateway.progress(run.run_id, self.cursors.get(run.run_id))
            for event in events:
                step = self.ops.get(event.get("stepKey") or "")
                if step is None:
                    continue
                parsed = _progress_of(event, self.spec.steps[step].name)
                if parsed is not None:
                    # A digest of the line, not its position: ids stay the same however
                    # the log was paged, so a reconnect replays exactly what was missed.
                    seq = zlib.crc32(f"{run.run_id}{event.get('message')}".encode()) & 0xFFFF
                    key = (_ms(event["timestamp"]), 0, step, seq)
                    self.progress.append((key, {"step": step, **parsed}))
            finished = run.status in ("SUCCESS", "FAILURE", "CANCELED")
            self.cursors[run.run_id] = "done" if finished else cursor

    def collect(self, snapshot: JobSnapshot, settings) -> tuple[list[tuple[Key, str, dict]], bool]:
        """Every event so far, in order, and whether the stream should end."""
        self._read_logs(snapshot)
        events = [(key, "progress", data) for key, data in self.progress]
        for index, step in enumerate(self.spec.steps):
            checkpoint = snapshot.checkpoints.get(step.name)
            if checkpoint:
                data = {
                    "step": index,
                    "step_name": step.name,
                    "status": "completed",
                    "output": checkpoint["output"],
                }
                events.append(((_ms(checkpoint["completed_at"]), 1, index, 0), "checkpoint", data))
        state = job_state(self.spec, snapshot)
        for run in snapshot.runs:
            if run.status == "FAILURE":
                events.append(_error_event(self.spec, run, state, settings, snapshot))
        end = state.status in ("completed", "failed", "cancelled")
        if state.status == "completed":
            last = self.spec.steps[-1].name
            done = _ms(snapshot.checkpoints[last]["completed_at"]) + 1
            result = snapshot.checkpoints[last]["output"]
            events.append(((done, 3, 0, 0), "complete", {"result": result}))
        elif state.status == "cancelled":
            when = _ms(max(snapshot.run_times[r.run_id]["updated"] or 0 for r in snapshot.runs))
            data = {
                "step": None,
                "error": "Job cancelled",
                "error_type": "cancelled",
                "retryable": False,
            }
            events.append(((when, 2, 99, 0), "error", data))
        events.sort(key=lambda e: e[0])
        return events, end


def _progress_of(event: dict, step_name: str) -> dict | None:
    message = event.get("message") or ""
    if event.get("__typename") == "ExecutionStepStartEvent":
        return {"step_name": step_name, "progress": 0, "message": f"Starting {step_name}..."}
    if message.startswith("progress ") and "%" in message:
        percent, _, text = message[len("progress ") :].partition("%")
        if percent.isdigit():
            return {"step_name": step_name, "progress": int(percent), "message": text.strip()}
    return None


def _error_event(spec, run, state, settings, snapshot) -> tuple[Key, str, dict]:
    step_name = run.tags.get(t.FAILED_STEP)
    step = spec.step_index(step_name) if step_name else None
    latest = state.latest is not None and state.latest.run_id == run.run_id
    retryable = run.retryable and (not latest or state.status == "pending_retry")
    data: dict[str, Any] = {
        "step": step,
        "error": run.tags.get(t.ERROR_MESSAGE, "The run failed"),
        "error_type": run.tags.get(t.ERROR_TYPE, "server_unavailable"),
        "retryable": retryable,
    }
    if retryable and latest:
        data["next_retry_at"] = next_retry_at(state, settings)
    if latest and state.max_attempts_exceeded:
        data["error"] = state.error["message"]
    when = run.tags.get(t.FAILED_AT) or snapshot.run_times[run.run_id]["end"]
    return (_ms(when), 2, step if step is not None else 99, 0), "error", data


def format_event(key: Key, name: str, data: dict) -> str:
    """One SSE message."""
    return f"id: {event_id(key)}\nevent: {name}\ndata: {json.dumps(data)}\n\n"


def event_stream(spec, job_id: str, after: Key | None, app) -> Iterator[str]:
    """Yield events past `after` until the job ends; a heartbeat comment when quiet."""
    gateway: DagsterGateway = app.extensions["dagster"]
    settings = app.extensions["retry_settings"]
    idle_poll = app.config["STREAM_POLL_SECONDS"]
    active_poll = min(idle_poll, app.config["STREAM_ACTIVE_POLL_SECONDS"])
    heartbeat = app.config["STREAM_HEARTBEAT_SECONDS"]
    events = JobEvents(gateway, spec)
    last_write = time.monotonic()
    yield "retry: 2000\n\n"
    while True:
        snapshot = gateway.snapshot(job_id, {spec.id: spec})
        collected, end = events.collect(snapshot, settings)
        for key, name, data in collected:
            if after is None or key > after:
                yield format_event(key, name, data)
                after, last_write = key, time.monotonic()
        if end:
            return
        if time.monotonic() - last_write >= heartbeat:
            yield ": heartbeat\n\n"
            last_write = time.monotonic()
        # Poll fast while a run is queued or running, slowly while a retry waits.
        active = any(run.status in ACTIVE for run in snapshot.runs)
        time.sleep(active_poll if active else idle_poll)


@bp.get("/jobs/<job_id>/stream")
@require_user(allow_query_token=True)
def stream(job_id: str):
    """Server-Sent Events for one of the caller's jobs."""
    spec, _ = load_owned_job(job_id)
    after = parse_event_id(request.headers.get("Last-Event-ID"))
    app = current_app._get_current_object()
    body = stream_with_context(event_stream(spec, job_id, after, app))
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return Response(body, mimetype="text/event-stream", headers=headers)
