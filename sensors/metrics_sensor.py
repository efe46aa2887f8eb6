"""The metrics sensor: fold run events into counters and the job index, a tick at a time.

Each tick reads the runs updated since its cursor (oldest first, at most `MAX_RUNS`),
refreshes the state of their jobs in `wf_job_index` and folds every finished run once:
its outcome, its steps' durations and failures, resumes and auto-retries. Predictions
the provider finished since the last tick give provider latency; queue depth and the
quota breakers are sampled. All of it lands in one transaction (wf_store.metrics), so
`/metrics` reads a few hundred rows however many jobs are stored.
"""

from __future__ import annotations

import json
import time
from typing import Any

import dagster as dg
import sqlalchemy as sa

from resources.state_database import StateDatabase
from wf_assets.job_runs import load_job_state
from wf_core import tags as t
from wf_core.circuit_breaker import BreakerBoard
from wf_core.clock import Clock
from wf_core.job_ids import job_id_created_at
from wf_core.specs import WorkflowSpec
from wf_core.times import epoch_seconds_to_datetime
from wf_store.job_index import JobIndex
from wf_store.metrics import Fold, MetricsStore
from wf_store.schema import predictions

METRICS_SENSOR_NAME = "workflow_metrics_sensor"
RETRY_SENSOR_NAME = "workflow_retry_sensor"
MAX_RUNS = 300
# Runs committed late with an older update time are read again; the folded table and
# unchanged job rows make that a no-op.
OVERLAP_SECONDS = 2.0
TERMINAL_JOB = {"completed", "failed", "cancelled"}
STEP_EVENTS = {
    dg.DagsterEventType.STEP_START,
    dg.DagsterEventType.STEP_SUCCESS,
    dg.DagsterEventType.STEP_FAILURE,
}
LATENCY_STATES = ("completed", "handed_off", "consuming", "consumed")


def _outcome(run: dg.DagsterRun) -> str:
    if t.STOPPED in run.tags:
        return "stopped"
    if run.status == dg.DagsterRunStatus.SUCCESS:
        return "parked" if t.PARKED_STEP in run.tags else "success"
    return "failure" if run.status == dg.DagsterRunStatus.FAILURE else "cancelled"


def _fold_run(instance, fold: Fold, run: dg.DagsterRun, spec: WorkflowSpec | None) -> None:
    workflow = run.tags.get(t.WORKFLOW, "")
    launched_by = run.tags.get(t.LAUNCHED_BY, "unknown")
    outcome = _outcome(run)
    fold.inc(
        "wf_runs_total", {"workflow": workflow, "launched_by": launched_by, "outcome": outcome}
    )
    attempt = int(run.tags.get(t.ATTEMPT, "1") or 1)
    if attempt > 1 and t.CONTINUES not in run.tags:
        labels = {"workflow": workflow, "launched_by": launched_by, "outcome": outcome}
        fold.inc("wf_resumes_total", labels)
        if launched_by == "retry_sensor":
            fold.inc("wf_auto_retries_total", {"workflow": workflow, "outcome": outcome})
    if run.status == dg.DagsterRunStatus.FAILURE and t.STOPPED not in run.tags:
        fold.inc(
            "wf_step_failures_total",
            {
                "workflow": workflow,
                "step": run.tags.get(t.FAILED_STEP, "unknown"),
                "error_type": run.tags.get(t.ERROR_TYPE, "server_unavailable"),
                "provider": run.tags.get(t.PROVIDER, ""),
                "model": run.tags.get(t.MODEL, ""),
            },
        )
    steps = {spec.op_name(s.name): s.name for s in spec.steps} if spec else {}
    started: dict[str, float] = {}
    for record in instance.all_logs(run.run_id, of_type=STEP_EVENTS):
        event, key = record.dagster_event, record.step_key
        if event is None or key is None:
            continue
        if event.event_type == dg.DagsterEventType.STEP_START:
            started[key] = record.timestamp
        elif key in started:
            ok = event.event_type == dg.DagsterEventType.STEP_SUCCESS
            labels = {
                "workflow": workflow,
                "step": steps.get(key, key),
                "outcome": "success" if ok else "failure",
            }
            fold.observe("wf_step_duration_seconds", labels, record.timestamp - started.pop(key))


def _job_row(spec: WorkflowSpec, state, job_id: str, now: float) -> dict[str, Any]:
    latest = state.latest
    try:
        created = job_id_created_at(job_id)
    except ValueError:
        created = latest.created_at if latest else now
    error = state.error or {}
    return {
        "workflow_id": spec.id,
        "user_id": latest.tags.get(t.USER, "unknown") if latest else "unknown",
        "status": state.status,
        "error_type": error.get("error_type")
        if state.status in ("failed", "pending_retry")
        else None,
        "failed_step": state.failed_step,
        "attempt": latest.attempt if latest else 1,
        "run_id": latest.run_id if latest else None,
        "created_at": created,
        "updated_at": now,
    }


def _refresh_jobs(instance, fold: Fold, index: JobIndex, specs, jobs: dict[str, str], ends, now):
    """Rewrite the index rows of these jobs; count jobs started and finished, and move the
    status gauge by the change."""
    previous = index.get_many(jobs)
    for job_id, workflow in jobs.items():
        spec = specs.get(workflow)
        if spec is None:
            continue
        state = load_job_state(instance, spec, job_id, failure_details=False)
        end = ends.get(job_id, now)
        row = _job_row(spec, state, job_id, end)
        old = previous.get(job_id)
        if old is None:
            fold.inc("wf_jobs_started_total", {"workflow": workflow})
        elif old.status == row["status"] and old.run_id == row["run_id"]:
            continue
        if old is None or old.status != row["status"]:
            if old is not None:
                fold.inc("wf_jobs", {"workflow": workflow, "status": old.status}, -1)
            fold.inc("wf_jobs", {"workflow": workflow, "status": row["status"]})
            was_terminal = old is not None and old.status in TERMINAL_JOB
            if row["status"] in TERMINAL_JOB and not was_terminal:
                labels = {"workflow": workflow, "status": row["status"]}
                fold.inc(
                    "wf_jobs_finished_total", {**labels, "error_type": row["error_type"] or ""}
                )
                fold.observe("wf_job_duration_seconds", labels, max(0.0, end - row["created_at"]))
        fold.jobs[job_id] = row


def _fold_latency(store: MetricsStore, fold: Fold) -> None:
    after = float(store.state("predictions_completed_after") or 0)
    c = predictions.c
    query = sa.select(c.provider, c.model, c.provider_status, c.created_at, c.completed_at).where(
        c.state.in_(LATENCY_STATES), c.updated_at > after, c.completed_at > after
    )
    newest = after
    with store.engine.connect() as conn:
        for provider, model, status, created, completed in conn.execute(query):
            labels = {"provider": provider, "model": model, "status": status or "unknown"}
            fold.observe("wf_provider_latency_seconds", labels, max(0.0, completed - created))
            newest = max(newest, completed)
    fold.state["predictions_completed_after"] = repr(newest)


def _sample(instance: dg.DagsterInstance, fold: Fold, now: float) -> None:
    queued = instance.get_runs_count(dg.RunsFilter(statuses=[dg.DagsterRunStatus.QUEUED]))
    running = instance.get_runs_count(
        dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED])
    )
    fold.set("wf_run_queue_depth", {}, queued)
    fold.set("wf_runs_in_progress", {}, running)
    fold.reset |= {"wf_breaker_open", "wf_breaker_opened_timestamp_seconds"}
    for key, breaker in open_breakers(instance).breakers.items():
        fold.set("wf_breaker_open", {"breaker": key}, 1)
        fold.set("wf_breaker_opened_timestamp_seconds", {"breaker": key}, breaker.opened_at)
    fold.set("wf_metrics_folded_timestamp_seconds", {}, now)


def open_breakers(instance: dg.DagsterInstance) -> BreakerBoard:
    """The quota breakers as the retry sensor last stored them (its cursor)."""
    for state in instance.all_instigator_state():
        if state.name == RETRY_SENSOR_NAME and state.instigator_data is not None:
            raw = getattr(state.instigator_data, "cursor", None)
            if raw:
                return BreakerBoard.from_dict(json.loads(raw).get("breakers", {}))
    return BreakerBoard()


def fold_metrics(
    instance: dg.DagsterInstance,
    specs: dict[str, WorkflowSpec],
    store: MetricsStore,
    now: float,
) -> int:
    """One tick: fold what changed since the stored cursor; the number of runs read."""
    after = float(store.state("runs_updated_after") or 0)
    since = epoch_seconds_to_datetime(max(0.0, after - OVERLAP_SECONDS))
    records = instance.get_run_records(
        filters=dg.RunsFilter(updated_after=since),
        limit=MAX_RUNS,
        order_by="update_timestamp",
        ascending=True,
    )
    fold = Fold()
    ours = [r for r in records if t.JOB_ID in r.dagster_run.tags]
    done = store.folded(r.dagster_run.run_id for r in ours if r.dagster_run.is_finished)
    jobs: dict[str, str] = {}
    ends: dict[str, float] = {}
    for record in ours:
        run = record.dagster_run
        jobs[run.tags[t.JOB_ID]] = run.tags.get(t.WORKFLOW, "")
        ends[run.tags[t.JOB_ID]] = record.end_time or record.update_timestamp.timestamp()
        if run.is_finished and run.run_id not in done:
            _fold_run(instance, fold, run, specs.get(run.tags.get(t.WORKFLOW, "")))
            fold.folded_runs.append(run.run_id)
    _refresh_jobs(instance, fold, JobIndex(store.store), specs, jobs, ends, now)
    if records:
        newest = records[-1].update_timestamp.timestamp()
        # A full page may hold more runs of the same instant: no overlap then, or it repeats.
        fold.state["runs_updated_after"] = repr(
            newest + (OVERLAP_SECONDS if len(records) == MAX_RUNS else 0.0)
        )
    _fold_latency(store, fold)
    _sample(instance, fold, now)
    store.apply(fold, now)
    return len(records)


def make_metrics_sensor(
    specs: dict[str, WorkflowSpec], clock: Clock = time.time
) -> dg.SensorDefinition:
    """The metrics sensor over the workflows in `specs`; tests pass a fake `clock`."""

    @dg.sensor(
        name=METRICS_SENSOR_NAME,
        minimum_interval_seconds=5,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Folds run events into the counters GET /metrics serves.",
    )
    def workflow_metrics_sensor(
        context: dg.SensorEvaluationContext, predictions: StateDatabase
    ) -> dg.SkipReason:
        read = fold_metrics(context.instance, specs, MetricsStore(predictions.store()), clock())
        return dg.SkipReason(f"folded {read} run updates")

    return workflow_metrics_sensor
