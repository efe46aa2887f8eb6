"""The owner check: every unfinished job has an owner, or it is repaired or failed.

A job not in a final state is owned by exactly one of: a queued or running run, a live
prediction row (parked at the provider, or completed and waiting for its hand-off),
a retry waiting in the retry queue. Any path that ends one owner without starting the
next would strand the job silently; this sensor finds such jobs.

Each tick reads a bounded slice of the open job pins (round-robin by job id) and, in
three bulk queries, which of them have an owner. Only a job with none has its state
derived. A job first seen ownerless is noted; still ownerless `grace` seconds later
(transitions take a tick or two: a failure waiting for the retry sensor's intake, a
completed prediction waiting for its hand-off) it is
- repaired: a run resumes it at its first step without a checkpoint, on its own spec
  version, with the options it was started with; or
- failed: when its code can no longer run it (`spec_changed`, see sensors.job_end).
Each action is written to `wf_owner_events` (admin history, metrics, the alert).
A job seen in a final state closes its pin. The read-model rows (wf_jobs) of the jobs
without an owner are rebuilt from the event log where they differ from it: every job ends
up there (a final job has no owner), so a row left behind by a writer that died between
Dagster's commit and the row's update is healed before its pin closes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import dagster as dg
import sqlalchemy as sa

from resources.state_database import StateDatabase
from runtime.read_model import heal
from sensors.job_end import end_job_request
from wf_assets.asset_keys import asset_key_for
from wf_assets.job_runs import load_job_state
from wf_core import tags as t
from wf_core.clock import Clock
from wf_core.config import EngineSettings
from wf_core.job_state import ACTIVE
from wf_core.run_config import config_for_steps
from wf_core.specs import WorkflowSpec, continuation_problem
from wf_store.predictions import LIVE, PredictionStore
from wf_store.schema import waiting
from wf_store.spec_versions import Pin, SpecVersions

OWNERS_SENSOR_NAME = "job_owners_sensor"
FINAL_STATUSES = {"completed", "failed", "cancelled"}


@dataclass(frozen=True)
class OwnerSettings:
    """How often the check runs, how many jobs a tick reads, and the grace before acting."""

    interval: float = 15.0
    batch: int = 500
    grace: float = 30.0


def _with_live_predictions(store: PredictionStore, job_ids: list[str]) -> set[str]:
    rows = store.for_jobs(job_ids)
    return {job_id for job_id, found in rows.items() if any(r.state in LIVE for r in found)}


def _with_retry_waiting(store: PredictionStore, job_ids: list[str]) -> set[str]:
    query = sa.select(waiting.c.job_id).where(waiting.c.job_id.in_(job_ids)).distinct()
    with store.engine.connect() as conn:
        return {row[0] for row in conn.execute(query)}


def _with_active_runs(instance: dg.DagsterInstance, job_ids: list[str]) -> set[str]:
    statuses = [dg.DagsterRunStatus(s) for s in ACTIVE]
    records = instance.get_run_records(
        filters=dg.RunsFilter(tags={t.JOB_ID: job_ids}, statuses=statuses)
    )
    return {r.dagster_run.tags.get(t.JOB_ID, "") for r in records}


def owned_jobs(
    instance: dg.DagsterInstance, store: PredictionStore, job_ids: list[str]
) -> set[str]:
    """Those of `job_ids` that have an owner (run, live prediction or waiting retry)."""
    if not job_ids:
        return set()
    return (
        _with_live_predictions(store, job_ids)
        | _with_retry_waiting(store, job_ids)
        | _with_active_runs(instance, job_ids)
    )


def repair_request(
    spec: WorkflowSpec, pin: Pin, parent: dg.DagsterRun | None, steps: list[str], attempt: int
) -> dg.RunRequest:
    """The run that hands an ownerless job back to a run: resume at its first open step."""
    config = parent.run_config if parent else pin.run_config
    tags = t.job_tags(
        spec.id,
        pin.job_id,
        pin.user_id,
        "owner_check",
        attempt=attempt,
        parent_run=parent.run_id if parent else None,
    )
    tags[t.SPEC_VERSION] = pin.digest
    return dg.RunRequest(
        run_key=f"repair:{pin.job_id}:attempt-{attempt}",
        job_name=spec.job_name,
        partition_key=pin.job_id,
        asset_selection=[asset_key_for(spec, step) for step in steps],
        run_config=config_for_steps(spec, config, steps),
        tags=tags,
    )


def _act(
    instance: dg.DagsterInstance,
    store: PredictionStore,
    versions: SpecVersions,
    specs: dict[str, WorkflowSpec],
    pin: Pin,
    now: float,
    log,
) -> tuple[dg.RunRequest | None, bool]:
    """Decide one ownerless job: its run request (if any) and whether it is final."""
    current = specs.get(pin.workflow_id)
    spec = versions.version(pin.digest) or current
    if spec is None:
        return None, False  # neither defined nor stored: nothing can run it here
    state = load_job_state(instance, spec, pin.job_id, failure_details=False)
    if state.status in FINAL_STATUSES:
        return None, True
    latest = state.latest
    parent = instance.get_run_by_id(latest.run_id) if latest else None
    attempt = (latest.attempt + 1) if latest else 2
    problem = continuation_problem(spec, current, state.next_steps)
    if problem or current is None:
        reason = problem or f"workflow {pin.workflow_id} is no longer defined"
        message = f"no owner, and its code cannot continue it: {reason}"
        versions.record_owner_event(pin.job_id, "failed", message, now)
        log.warning(f"job {pin.job_id}: {message}")
        if current is None:
            store.request_cancel(pin.job_id)
            return None, False
        return end_job_request(current, pin.job_id, parent, reason, store), False
    steps = state.next_steps
    message = f"no owner ({state.status}); resumed at {steps[0]} as attempt {attempt}"
    versions.record_owner_event(pin.job_id, "repaired", message, now)
    log.warning(f"job {pin.job_id}: {message}")
    return repair_request(spec, pin, parent, steps, attempt), False


def evaluate_owners(
    context: dg.SensorEvaluationContext,
    specs: dict[str, WorkflowSpec],
    store: PredictionStore,
    settings: OwnerSettings,
    now: float,
) -> dg.SensorResult:
    """One tick over a slice of the open jobs; the cursor is the last job id read."""
    versions = SpecVersions(store)
    pins = versions.open_pins(settings.batch, context.cursor or "")
    cursor = pins[-1].job_id if len(pins) == settings.batch else ""
    # A job pinned moments ago may not have its first run yet: not a candidate.
    pins = [p for p in pins if now - p.created_at > settings.grace]
    owned = owned_jobs(context.instance, store, [p.job_id for p in pins])
    versions.owned([p.job_id for p in pins if p.job_id in owned and p.ownerless_since])
    candidates = [p for p in pins if p.job_id not in owned]
    requests: list[dg.RunRequest] = []
    finished: list[str] = []
    newly_ownerless: list[str] = []
    for pin in candidates:
        if pin.ownerless_since is None:
            spec = versions.version(pin.digest) or specs.get(pin.workflow_id)
            if spec is not None:
                state = load_job_state(context.instance, spec, pin.job_id, failure_details=False)
                if state.status in FINAL_STATUSES:
                    finished.append(pin.job_id)
                    continue
            newly_ownerless.append(pin.job_id)
            continue
        if now - pin.ownerless_since < settings.grace:
            continue
        request, final = _act(context.instance, store, versions, specs, pin, now, context.log)
        if final:
            finished.append(pin.job_id)
        elif request is not None:
            requests.append(request)
            versions.owned([pin.job_id])  # looked at afresh once its run exists
    versions.finished(finished, now)
    versions.mark_ownerless(newly_ownerless, now)
    # The read model's rows of the jobs looked at closely are made to equal the event log:
    # a writer killed between Dagster's commit and its row update is healed here.
    heal(context.instance, store, [p.job_id for p in candidates])
    return dg.SensorResult(run_requests=requests, cursor=cursor)


def make_owners_sensor(
    specs: dict[str, WorkflowSpec],
    jobs: list,
    settings: OwnerSettings | None = None,
    clock: Clock = time.time,
) -> dg.SensorDefinition:
    """The owner check over the workflow `jobs`; tests pass a fake `clock`."""
    settings = settings or OwnerSettings()

    @dg.sensor(
        name=OWNERS_SENSOR_NAME,
        minimum_interval_seconds=max(1, int(settings.interval)),
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Checks that every unfinished job has an owner (a run, a parked "
        "prediction or a waiting retry); repairs or fails the jobs that have none.",
        jobs=jobs,
    )
    def job_owners_sensor(context: dg.SensorEvaluationContext, predictions: StateDatabase):
        return evaluate_owners(context, specs, predictions.store(), settings, clock())

    return job_owners_sensor


def owner_settings(config: EngineSettings) -> OwnerSettings:
    """OwnerSettings from OWNER_CHECK_* variables; defaults for the unset."""
    return OwnerSettings(
        interval=config.owner_check_interval_seconds,
        batch=config.owner_check_batch,
        grace=config.owner_check_grace_seconds,
    )


def owner_settings_from_env(env: dict[str, str] | None = None) -> OwnerSettings:
    """`owner_settings` of `env` (this process's environment by default)."""
    return owner_settings(EngineSettings.from_env(env))
