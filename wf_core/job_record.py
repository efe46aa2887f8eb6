"""A job's read-model row, projected from what Dagster and the prediction store recorded.

Pure: the live path (every writer's instance, runtime/read_model.py) and the rebuild from
the event log fold the same records with these functions, so a rebuilt row equals the
live one. A job's `JobRecord` holds what the bridge's execution document is made of (its
runs as dagster-webserver shows them, the checkpoints of its steps' materializations, its
cancel marks, the newest prediction of each step), and `project` derives the columns that
are filtered and listed on (status, current step, error, retry time...).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from wf_core import tags as t
from wf_core.job_state import JobState, RunView, derive_job_state
from wf_core.retry_policy import RetrySettings, next_retry_at
from wf_core.specs import WorkflowSpec

# Dagster's statuses of a run that has started (GraphQL shows its end as its start
# when a run failed before starting: `resolve_startTime`).
STARTED = frozenset({"STARTED", "SUCCESS", "FAILURE", "CANCELING", "CANCELED"})
# The prediction states in which the provider still works on it (bridge: AT_PROVIDER).
AT_PROVIDER = frozenset({"creating", "parked"})
PROVIDER_RUNNING = frozenset({"starting", "processing"})


@dataclass(frozen=True)
class RunEntry:
    """One run as dagster-webserver shows it: status, tags and its record's times."""

    run_id: str
    status: str
    tags: dict[str, str]
    created_at: float
    start: float | None = None
    end: float | None = None
    updated: float | None = None

    def view(self) -> RunView:
        """The run as the state rules read it."""
        return RunView(self.run_id, self.status, dict(self.tags), self.created_at)

    def times(self) -> dict[str, float | None]:
        """Start, end and update times, as the bridge's snapshot keeps them."""
        start = self.start
        if start is None and self.status in STARTED and self.end is not None:
            start = self.end
        return {"start": start, "end": self.end, "updated": self.updated}


@dataclass(frozen=True)
class StoredCheckpoint:
    """A step's checkpoint (its stored dict) from a materialization of `asset` in run
    `run_id` (the bridge counts those of the job's own runs only)."""

    asset: tuple[str, ...]
    timestamp: float
    run_id: str
    checkpoint: dict[str, Any]


@dataclass(frozen=True)
class JobRecord:
    """Everything recorded of one job that its execution document is made of."""

    job_id: str
    runs: dict[str, RunEntry] = field(default_factory=dict)
    checkpoints: dict[str, StoredCheckpoint] = field(default_factory=dict)
    cancel_marks: frozenset[tuple[str, ...]] = frozenset()
    # The newest prediction row of each step (the fields the document shows).
    predictions: dict[str, dict[str, Any]] = field(default_factory=dict)

    # -- the folds: one per kind of record ------------------------------------------------

    def with_run(self, run: RunEntry) -> JobRecord:
        """The run created, or its status, tags or times changed. Two writers may fold
        what each read of the run in either order: an older read never replaces a newer."""
        old = self.runs.get(run.run_id)
        if old is not None and (old.updated or 0.0) > (run.updated or 0.0):
            return self
        return replace(self, runs={**self.runs, run.run_id: run})

    def with_checkpoint(
        self, asset: tuple[str, ...], timestamp: float, run_id: str, raw: dict[str, Any]
    ) -> JobRecord:
        """A step's materialization carried a checkpoint; the newest one of a step wins
        (as the bridge reads them: ordered by time, the last one kept)."""
        step = asset[-1]
        old = self.checkpoints.get(step)
        if old is not None and old.asset == tuple(asset) and old.timestamp > timestamp:
            return self
        new = StoredCheckpoint(tuple(asset), timestamp, run_id, dict(raw))
        return replace(self, checkpoints={**self.checkpoints, step: new})

    def with_cancel_mark(self, asset: tuple[str, ...]) -> JobRecord:
        """An observation on `asset` carried the cancel mark."""
        return replace(self, cancel_marks=self.cancel_marks | {tuple(asset)})

    def with_prediction(self, row: Mapping[str, Any]) -> JobRecord:
        """A prediction row changed: kept if it is its step's newest (as the store orders
        them: by creation time, then id)."""
        step = str(row["step"])
        old = self.predictions.get(step)
        if old is not None and _newer(old, row):
            return self
        kept = {key: row.get(key) for key in PREDICTION_FIELDS}
        return replace(self, predictions={**self.predictions, step: kept})

    # -- what readers need ------------------------------------------------------------------

    def run_views(self) -> list[RunView]:
        """The runs, newest first (as GraphQL lists them)."""
        runs = sorted(self.runs.values(), key=lambda r: (r.created_at, r.run_id), reverse=True)
        return [run.view() for run in runs]

    def first_run(self) -> RunEntry | None:
        """The job's first run (who started it, which workflow)."""
        return min(self.runs.values(), key=lambda r: (r.created_at, r.run_id), default=None)

    def step_checkpoints(self, spec: WorkflowSpec) -> dict[str, dict[str, Any]]:
        """The checkpoints of the spec's steps (their stored dicts), by step name."""
        found = {}
        for step in spec.steps:
            stored = self.checkpoints.get(step.name)
            if (
                stored is not None
                and stored.asset == (spec.id, step.name)
                and stored.run_id in self.runs
            ):
                found[step.name] = stored.checkpoint
        return found

    def cancelled(self, spec: WorkflowSpec) -> bool:
        """Whether the job carries the cancel mark on its workflow's first step."""
        return (spec.id, spec.steps[0].name) in self.cancel_marks

    def state(self, spec: WorkflowSpec) -> JobState:
        """The shared job-state rules over this record."""
        completed = set(self.step_checkpoints(spec))
        return derive_job_state(spec, self.run_views(), completed, self.cancelled(spec))

    def waiting(self, spec: WorkflowSpec, state: JobState) -> dict[str, Any] | None:
        """The prediction the running step waits on at its provider (the bridge's rule:
        the step's newest row, still at the provider, not finished there)."""
        step = running_step(state)
        row = self.predictions.get(step) if step else None
        if row is None or row["state"] not in AT_PROVIDER:
            return None
        return row if (row.get("provider_status") or "starting") in PROVIDER_RUNNING else None

    # -- stored form ----------------------------------------------------------------------

    def to_json(self) -> str:
        """The stored form (one JSON text)."""
        body = {
            "runs": [vars(run) for run in sorted(self.runs.values(), key=_run_order)],
            "checkpoints": {
                step: [list(c.asset), c.timestamp, c.run_id, c.checkpoint]
                for step, c in sorted(self.checkpoints.items())
            },
            "cancel_marks": sorted(list(p) for p in self.cancel_marks),
            "predictions": dict(sorted(self.predictions.items())),
        }
        return json.dumps(body, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, job_id: str, text: str | None) -> JobRecord:
        """A stored record back (an empty one for no text)."""
        if not text:
            return cls(job_id)
        body = json.loads(text)
        runs = {r["run_id"]: RunEntry(**r) for r in body.get("runs", [])}
        checkpoints = {
            step: StoredCheckpoint(tuple(asset), float(ts), run_id, raw)
            for step, (asset, ts, run_id, raw) in body.get("checkpoints", {}).items()
        }
        marks = frozenset(tuple(p) for p in body.get("cancel_marks", []))
        return cls(job_id, runs, checkpoints, marks, dict(body.get("predictions", {})))


PREDICTION_FIELDS = (
    "id",
    "step",
    "state",
    "provider",
    "prediction_id",
    "provider_status",
    "progress",
    "created_at",
    "updated_at",
)


def _newer(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether `old` is a newer prediction row than `new` (another row of the step)."""
    return (float(old["created_at"]), str(old["id"])) > (float(new["created_at"]), str(new["id"]))


def _run_order(run: RunEntry) -> tuple[float, str]:
    return run.created_at, run.run_id


def running_step(state: JobState) -> str | None:
    """The step a running job is on: the parked one, else its first step left to run."""
    if state.status != "running":
        return None
    return state.parked_step or (state.next_steps[0] if state.next_steps else None)


def project(
    record: JobRecord, spec: WorkflowSpec | None, settings: RetrySettings
) -> dict[str, Any]:
    """The row's columns: what is filtered and listed on, and the record itself.

    Without the job's spec (not stored, or no run yet) only what the runs say is known;
    the status is then left `pending` until a write that knows the spec.
    """
    first = record.first_run()
    tags = first.tags if first else {}
    columns: dict[str, Any] = {
        "job_id": record.job_id,
        "workflow_id": tags.get(t.WORKFLOW, ""),
        "user_id": tags.get(t.USER, ""),
        "spec_version": tags.get(t.SPEC_VERSION),
        "status": "pending",
        "current_step": None,
        "failed_step": None,
        "error_type": None,
        "error_message": None,
        "retry_at": None,
        "attempt": 0,
        "run_id": None,
        "first_run_id": first.run_id if first else None,
        "provider_status": None,
        "created_at": first.created_at if first else 0.0,
        "updated_at": max((r.updated or 0.0 for r in record.runs.values()), default=0.0),
        "record": record.to_json(),
    }
    if spec is None:
        return columns
    state = record.state(spec)
    latest = state.latest
    waiting = record.waiting(spec, state)
    last = spec.steps[-1].name
    current = running_step(state) or (state.next_steps[0] if state.next_steps else last)
    columns.update(
        status=state.status,
        current_step=current,
        attempt=latest.attempt if latest else 0,
        run_id=latest.run_id if latest else None,
        provider_status=(waiting.get("provider_status") or "starting") if waiting else None,
    )
    if waiting is not None:
        columns["updated_at"] = max(columns["updated_at"], float(waiting["updated_at"]))
    if state.status in ("failed", "pending_retry") and state.error:
        columns.update(
            failed_step=state.failed_step,
            error_type=state.error.get("error_type"),
            error_message=state.error.get("message"),
            retry_at=next_retry_at(spec, state, settings),
        )
    return columns
