"""What a job's feed reads on each poll: the job's events from Dagster (its snapshot
and its runs' new step logs) and the running step's progress at its provider."""

from __future__ import annotations

from typing import Any

from bridge_api.dagster_client.gateway import DagsterGateway
from bridge_api.dagster_client.snapshots import JobSnapshot
from bridge_api.jobs.execution_view import job_state, next_retry_at
from bridge_api.stores.predictions import predictions_of, waiting_prediction
from bridge_api.streaming.events import Event, SortKey
from wf_core import tags as t
from wf_core.job_state import FINISHED, counted_runs
from wf_core.specs import WorkflowSpec
from wf_core.times import epoch_ms_text_to_ms, iso_to_epoch_ms, seconds_to_ms
from wf_store.predictions import Prediction


class JobEvents:
    """Collects a job's events, reading each run's step logs incrementally."""

    def __init__(self, gateway: DagsterGateway, spec: WorkflowSpec) -> None:
        self.gateway = gateway
        self.spec = spec
        self.cursors: dict[str, str | None] = {}
        self.progress: dict[str, list[tuple[int, dict]]] = {}
        self.ops = {spec.op_name(s.name): i for i, s in enumerate(spec.steps)}

    def read_logs(self, runs: list) -> None:
        """Read the new step logs of these runs (a GraphQL request per unfinished run)."""
        for run in counted_runs(runs):
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

    def collect(
        self, snapshot: JobSnapshot, settings, logs: bool = True
    ) -> tuple[list[Event], bool]:
        """Every event of the job so far, and whether the stream should end; without
        `logs`, the runs' step logs are not read again (those read before are used)."""
        runs = list(reversed(counted_runs(snapshot.runs)))  # creation order
        if logs:
            self.read_logs(runs)
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

    def poll(self, snapshot: JobSnapshot, rows: list[Prediction] | None = None) -> dict | None:
        """The event's data if the provider reports a progress not yet sent, else None;
        `rows` are the job's predictions when the read model gave them (else read)."""
        state = job_state(self.spec, snapshot)
        if state.status != "running":
            return None
        if rows is None:
            found = predictions_of([self.job_id])
            if found is None:
                return None
            rows = found.get(self.job_id, [])
        row = waiting_prediction(state, rows)
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
