"""Snapshots of jobs from what Dagster answers: one job's runs, checkpoints and cancel
mark, and the lookups a page of jobs shares (read once for all of them)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from bridge_api.dagster_client.documents import MARK_LOOKUP_LIMIT
from bridge_api.dagster_client.errors import DagsterError
from wf_core import tags as t
from wf_core.checkpoint import Checkpoint
from wf_core.job_state import RunView, derive_job_state
from wf_core.specs import WorkflowSpec
from wf_core.tags import cancel_mark_path, is_cancel_mark

# A job in these states gets no new run: nothing retries, resumes or continues it.
FINAL_STATUSES = ("completed", "cancelled")


@dataclass
class JobSnapshot:
    """One job as Dagster knows it: runs, checkpoints, cancel mark, progress."""

    job_id: str
    runs: list[RunView]
    checkpoints: dict[str, Checkpoint]
    cancelled: bool
    run_times: dict[str, dict[str, float | None]] = field(default_factory=dict)
    run_configs: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def owner(self) -> str | None:
        """The user who started the job (its first run's `wf/user` tag)."""
        first = min(self.runs, key=lambda r: r.created_at, default=None)
        return first.tags.get(t.USER) if first else None

    @property
    def workflow_id(self) -> str | None:
        """The workflow the job runs."""
        return self.runs[0].tags.get(t.WORKFLOW) if self.runs else None


@dataclass
class PageLookups:
    """A page's checkpoints (by run and partition) and cancel-mark observations (by
    asset and partition, newest first), read once for all its jobs."""

    workflows: set[str]
    events: dict[tuple[str, str | None], list[dict]] = field(default_factory=dict)
    marks: dict[tuple[tuple[str, ...], str | None], list[dict]] = field(default_factory=dict)

    def snapshot(
        self, job_id: str, raw_runs: list[dict], specs: Mapping[str, WorkflowSpec]
    ) -> JobSnapshot:
        """The job's snapshot from its runs (newest first) and these lookups."""
        events = [e for raw in raw_runs for e in self.events.get((raw["runId"], job_id), [])]

        def observations(path: list[str]) -> list[dict]:
            return self.marks.get((tuple(path), job_id), [])[:MARK_LOOKUP_LIMIT]

        return job_snapshot(job_id, raw_runs, events, observations, specs)


def runs_of(result: dict) -> list[dict]:
    """A runs query's results (DagsterError when Dagster answered an error instead)."""
    if result.get("__typename") != "Runs":
        raise DagsterError(result.get("message", "runs unavailable"))
    return result["results"]


def tag_of(run: dict, key: str) -> str | None:
    """A raw run's tag value, or None."""
    return next((tag["value"] for tag in run["tags"] if tag["key"] == key), None)


def mark_path(spec: WorkflowSpec) -> list[str]:
    """The asset whose observation is the job's cancel mark: the workflow's first step."""
    return cancel_mark_path(spec.id, spec.steps[0].name)


def _has_cancel_mark(asset: dict) -> bool:
    return any(is_cancel_mark(o.get("description")) for o in asset.get("assetObservations") or [])


def asset_events(asset: dict | None, name: str) -> list[dict]:
    """An asset lookup's events of one kind (none when the asset is missing)."""
    return (asset or {}).get(name) or []


def job_snapshot(
    job_id: str,
    raw_runs: list[dict],
    events: list[dict],
    observations: Callable[[list[str]], list[dict]],
    specs: Mapping[str, WorkflowSpec],
) -> JobSnapshot:
    """One job's snapshot from its runs (newest first), the materializations of its
    partition in them (each run's oldest first) and its workflow's cancel-mark lookup."""
    runs, times, configs = [], {}, {}
    for raw in raw_runs:
        tags = {tag["key"]: tag["value"] for tag in raw["tags"]}
        runs.append(RunView(raw["runId"], raw["status"], tags, raw["creationTime"]))
        times[raw["runId"]] = {
            "start": raw["startTime"],
            "end": raw["endTime"],
            "updated": raw["updateTime"],
        }
        if raw.get("runConfigYaml"):
            configs[raw["runId"]] = yaml.safe_load(raw["runConfigYaml"]) or {}
    snapshot = JobSnapshot(job_id, runs, {}, False, times, configs)
    spec = specs.get(snapshot.workflow_id or "")
    if spec is None:
        return snapshot
    snapshot.cancelled = _has_cancel_mark({"assetObservations": observations(mark_path(spec))})
    steps = {(spec.id, step.name): step.name for step in spec.steps}
    for event in sorted(events, key=lambda e: float(e["timestamp"])):
        step = steps.get(tuple(event["assetKey"]["path"]))
        checkpoint = _checkpoint_of(event)
        if step and checkpoint is not None:
            snapshot.checkpoints[step] = checkpoint
    return snapshot


def may_have_newer_runs(snapshot: JobSnapshot, specs: Mapping[str, WorkflowSpec]) -> bool:
    """Whether a job may have runs newer than those read: only a completed or cancelled
    job never gets another (nothing retries, resumes or continues it)."""
    spec = specs.get(snapshot.workflow_id or "")
    if spec is None:
        return True
    completed = set(snapshot.checkpoints)
    state = derive_job_state(spec, snapshot.runs, completed, snapshot.cancelled)
    return state.status not in FINAL_STATUSES


def _checkpoint_of(event: dict) -> Checkpoint | None:
    for entry in event.get("metadataEntries") or []:
        if entry.get("label") == "checkpoint" and entry.get("jsonString"):
            return Checkpoint.from_dict(json.loads(entry["jsonString"]))
    return None
