"""`GET /jobs/<job_id>/stream`: the job's history and live progress as Server-Sent Events.

Events are derived from what Dagster recorded (step logs, checkpoints, failed runs).
Those records do not become visible in the order of their times (a checkpoint can
show up one poll after a later log line), so delivery never relies on a time cursor:
every event has an identity (a run's n-th progress line, a step's checkpoint, a
run's failure, the end), and each SSE id says which of them the client has received
(`Delivered`). A stream sends every event it has not sent yet, whatever its time,
and a reconnect with `Last-Event-ID` receives exactly what is missing.

A parked step's progress comes from its provider instead (the prediction store's row,
read on each poll while the job is running), and is sent as a `progress` event of the
usual shape whenever it changes. It is a level, not a history: it is not counted in
the SSE id (its event carries the id of what was delivered before it, unchanged), so
ids and replays stay exactly as above, and a reconnecting client is sent the current
provider progress once more, after whatever it missed. Resending a level is harmless;
encoding every provider reading into the id would make ids grow with no gain.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Response, current_app, request

from bridge_api.auth import require_user
from bridge_api.dagster_gateway import DagsterGateway, JobSnapshot
from bridge_api.errors import ApiError
from bridge_api.execution_view import job_state, next_retry_at
from bridge_api.feeds import StreamHub, StreamsFull, client_gone, watch
from bridge_api.jobs import catalog, gateway, job_not_found, owned_spec
from bridge_api.predictions import predictions_of, waiting_prediction
from wf_core import tags as t
from wf_core.job_ids import is_job_id
from wf_core.job_state import FINISHED, counted_runs
from wf_core.specs import WorkflowSpec
from wf_core.times import epoch_ms_text_to_ms, iso_to_epoch_ms, seconds_to_ms

bp = Blueprint("stream", __name__)
# Order inside one batch of new events: time, then kind, then position.
SortKey = tuple[int, int, int, int]
# What an event is: ("p", run, n) a run's n-th progress line, ("c", step) a
# checkpoint, ("e", run) a run's failure, ("x",) the cancellation, ("t",) completion.
Identity = tuple


@dataclass
class Delivered:
    """Which of a job's events a client has received; its text form is the SSE id."""

    checkpoints: int = 0  # bit i: step i's checkpoint
    errors: int = 0  # bit i: the failure of run i (runs in creation order)
    progress: list[int] = field(default_factory=list)  # run i's first n progress lines
    cancelled: bool = False
    completed: bool = False

    def has(self, identity: Identity) -> bool:
        """Whether the event was received."""
        kind = identity[0]
        if kind == "p":
            run, n = identity[1], identity[2]
            return run < len(self.progress) and n < self.progress[run]
        if kind == "c":
            return bool(self.checkpoints >> identity[1] & 1)
        if kind == "e":
            return bool(self.errors >> identity[1] & 1)
        return self.cancelled if kind == "x" else self.completed

    def add(self, identity: Identity) -> None:
        """Record the event as received (a run's progress lines arrive in order)."""
        kind = identity[0]
        if kind == "p":
            run, n = identity[1], identity[2]
            self.progress.extend([0] * (run + 1 - len(self.progress)))
            self.progress[run] = max(self.progress[run], n + 1)
        elif kind == "c":
            self.checkpoints |= 1 << identity[1]
        elif kind == "e":
            self.errors |= 1 << identity[1]
        elif kind == "x":
            self.cancelled = True
        else:
            self.completed = True

    def encode(self) -> str:
        """The SSE id: `v2.<checkpoints>.<errors>.<progress per run>.<end flags>`."""
        progress = "_".join(str(n) for n in self.progress) or "0"
        flags = int(self.cancelled) | int(self.completed) << 1
        return f"v2.{self.checkpoints}.{self.errors}.{progress}.{flags}"

    @classmethod
    def parse(cls, value: str | None) -> Delivered:
        """An SSE id back into what was received; nothing for an absent or foreign id."""
        parts = (value or "").split(".")
        if len(parts) != 5 or parts[0] != "v2":
            return cls()
        try:
            progress = [int(n) for n in parts[3].split("_")]
            flags = int(parts[4])
            return cls(int(parts[1]), int(parts[2]), progress, bool(flags & 1), bool(flags & 2))
        except ValueError:
            return cls()


@dataclass(frozen=True)
class Event:
    """One SSE event: what it is, where it goes in a batch, its name and data."""

    identity: Identity
    order: SortKey
    name: str
    data: dict


class JobEvents:
    """Collects a job's events, reading each run's step logs incrementally."""

    def __init__(self, gateway: DagsterGateway, spec: WorkflowSpec) -> None:
        self.gateway = gateway
        self.spec = spec
        self.cursors: dict[str, str | None] = {}
        self.progress: dict[str, list[tuple[int, dict]]] = {}
        self.ops = {spec.op_name(s.name): i for i, s in enumerate(spec.steps)}

    def _read_logs(self, runs: list) -> None:
        for run in runs:
            if self.cursors.get(run.run_id) == "done":
                continue
            lines = self.progress.setdefault(run.run_id, [])
            events, cursor = self.gateway.progress(run.run_id, self.cursors.get(run.run_id))
            for event in events:
                step = self.ops.get(event.get("stepKey") or "")
                if step is None:
                    continue
                parsed = _progress_of(event, self.spec.steps[step].name)
                if parsed is not None:
                    # Never earlier than the line before: a run's lines stay in log order.
                    logged_ms = epoch_ms_text_to_ms(event["timestamp"])  # GraphQL: ms as text
                    when = max(logged_ms, lines[-1][0] if lines else 0)
                    lines.append((when, {"step": step, **parsed}))
            finished = run.status in FINISHED
            self.cursors[run.run_id] = "done" if finished else cursor

    def collect(self, snapshot: JobSnapshot, settings) -> tuple[list[Event], bool]:
        """Every event of the job so far, and whether the stream should end."""
        runs = list(reversed(counted_runs(snapshot.runs)))  # creation order
        self._read_logs(runs)
        events = []
        for index, run in enumerate(runs):
            for n, (when, data) in enumerate(self.progress.get(run.run_id, [])):
                events.append(Event(("p", index, n), (when, 0, index, n), "progress", data))
        for index, step in enumerate(self.spec.steps):
            checkpoint = snapshot.checkpoints.get(step.name)
            if checkpoint:
                data = {
                    "step": index,
                    "step_name": step.name,
                    "status": "completed",
                    "output": checkpoint.output,
                }
                when = iso_to_epoch_ms(checkpoint.completed_at)
                events.append(Event(("c", index), (when, 1, index, 0), "checkpoint", data))
        state = job_state(self.spec, snapshot)
        for index, run in enumerate(runs):
            if run.status == "FAILURE" and t.STOPPED not in run.tags:
                order, data = _error_event(self.spec, run, state, settings, snapshot)
                events.append(Event(("e", index), order, "error", data))
        end = state.status in ("completed", "failed", "cancelled")
        if state.status == "completed":
            last = self.spec.steps[-1].name
            done = iso_to_epoch_ms(snapshot.checkpoints[last].completed_at) + 1
            result = snapshot.checkpoints[last].output
            events.append(Event(("t",), (done, 3, 0, 0), "complete", {"result": result}))
        elif state.status == "cancelled":
            updated = max(snapshot.run_times[r.run_id]["updated"] or 0 for r in snapshot.runs)
            when = seconds_to_ms(updated)
            data = {
                "step": None,
                "error": "Job cancelled",
                "error_type": "cancelled",
                "retryable": False,
            }
            events.append(Event(("x",), (when, 2, 99, 0), "error", data))
        return events, end


class ProviderProgress:
    """The running step's progress at its provider, as a `progress` event when it changes."""

    def __init__(self, spec: WorkflowSpec, job_id: str) -> None:
        self.spec = spec
        self.job_id = job_id
        self.sent: tuple[str, int] | None = None  # (intent id, progress) last sent

    def poll(self, snapshot: JobSnapshot) -> dict | None:
        """The event's data if the provider reports a progress not yet sent, else None."""
        state = job_state(self.spec, snapshot)
        if state.status != "running":
            return None
        rows = predictions_of([self.job_id])
        if rows is None:
            return None
        row = waiting_prediction(state, rows.get(self.job_id, []))
        if row is None or row.progress is None or (row.id, row.progress) == self.sent:
            return None
        self.sent = (row.id, row.progress)
        provider = row.public()
        return {
            "step": self.spec.step_index(row.step),
            "step_name": row.step,
            "progress": row.progress,
            "message": f"Waiting for {row.provider} ({provider['status']})",
            "provider": provider,
        }


def _progress_of(event: dict, step_name: str) -> dict | None:
    message = event.get("message") or ""
    if event.get("__typename") == "ExecutionStepStartEvent":
        return {"step_name": step_name, "progress": 0, "message": f"Starting {step_name}..."}
    if message.startswith("progress ") and "%" in message:
        percent, _, text = message[len("progress ") :].partition("%")
        if percent.isdigit():
            return {"step_name": step_name, "progress": int(percent), "message": text.strip()}
    return None


def _error_event(spec, run, state, settings, snapshot) -> tuple[SortKey, dict]:
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
        data["next_retry_at"] = next_retry_at(spec, state, settings)
    if latest and state.max_attempts_exceeded:
        data["error"] = state.error["message"]
    failed_at = run.tags.get(t.FAILED_AT)  # ISO-8601; else the run's end, epoch seconds
    end = snapshot.run_times[run.run_id]["end"]
    when = iso_to_epoch_ms(failed_at) if failed_at else seconds_to_ms(end or 0)
    return (when, 2, step if step is not None else 99, 0), data


def format_event(event_id: str, name: str, data: dict) -> str:
    """One SSE message."""
    return f"id: {event_id}\nevent: {name}\ndata: {json.dumps(data)}\n\n"


def _order(event: Event) -> SortKey:
    return event.order


def _owned_spec(hub: StreamHub, job_id: str) -> WorkflowSpec:
    """The caller's job's workflow, as `load_owned_job` decides, with the job's owner read
    once per process: a thousand watchers arriving at once cost Dagster one read."""
    if not is_job_id(job_id):
        raise job_not_found(job_id)

    def load() -> tuple[str | None, str | None]:
        snapshot = gateway().snapshot(job_id, catalog().specs_for_job(job_id))
        if not snapshot.runs:
            raise job_not_found(job_id)
        return snapshot.owner, snapshot.workflow_id

    return owned_spec(job_id, *hub.owners.get(job_id, load))


@bp.get("/jobs/<job_id>/stream")
@require_user(allow_query_token=True)
def stream(job_id: str):
    """Server-Sent Events for one of the caller's jobs, from the job's shared feed."""
    hub: StreamHub = current_app.extensions["streams"]
    try:
        release = hub.acquire()
    except StreamsFull:
        retry_after = current_app.config["STREAM_RETRY_AFTER_SECONDS"]
        raise ApiError(
            503,
            "too_many_streams",
            "This server streams to as many clients as it can; try again shortly.",
            headers={"Retry-After": str(retry_after)},
        ) from None
    try:
        spec = _owned_spec(hub, job_id)
    except BaseException:
        release()
        raise
    delivered = Delivered.parse(request.headers.get("Last-Event-ID"))
    heartbeat = current_app.config["STREAM_HEARTBEAT_SECONDS"]
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    body = watch(hub, spec, job_id, delivered, heartbeat, client_gone(request.environ))
    response = Response(body, mimetype="text/event-stream", headers=headers)
    # Called by the server when the response ends or the client goes away, even when the
    # body was never started: the slot never outlives the connection.
    response.call_on_close(release)
    return response
