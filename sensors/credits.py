"""The credits sensor: settle each job's hold as its steps complete and once it is final.

A tick reads the open holds that are due (wf_store.credits), derives each job's state
from its runs and checkpoints (the same rules as everyone), captures the share of every
completed step and, once the job is completed, failed for good or cancelled, releases
the rest and closes the hold. Every movement is keyed in the ledger, so a tick that
repeats work (a daemon restarted mid-tick, a run SIGKILLed and resumed) changes nothing.
It also deletes idempotency keys past their 24 h.
"""

from __future__ import annotations

import time

import dagster as dg

from resources.state_database import StateDatabase
from wf_assets.job_runs import load_job_state
from wf_core.clock import Clock
from wf_core.job_ids import job_id_created_at
from wf_core.specs import WorkflowSpec
from wf_store.credits import CreditStore, Hold
from wf_store.idempotency import IdempotencyStore
from wf_store.spec_versions import SpecVersions

CREDITS_SENSOR_NAME = "workflow_credits_sensor"
FINAL = ("completed", "failed", "cancelled")
BATCH = 100
# How soon a job is looked at again: soon while it runs, rarely while it waits for a retry.
CHECK_RUNNING_SECONDS = 2.0
CHECK_WAITING_SECONDS = 30.0
# A hold whose job has no run this long after execute was never launched (a bridge that
# died between the reserve and the launch): its credits go back.
NEVER_LAUNCHED_SECONDS = 600.0


def settle_hold(
    instance: dg.DagsterInstance,
    specs: dict[str, WorkflowSpec],
    store: CreditStore,
    hold: Hold,
    now: float,
    versions: SpecVersions | None = None,
) -> str | None:
    """Settle one hold against its job's state (read with the job's own spec version);
    returns the final status it closed with."""
    pinned = versions.spec_for_job(hold.job_id) if versions else None
    spec = pinned if pinned is not None else specs.get(hold.workflow_id)
    if spec is None:  # its spec was removed: nothing can run it any more
        store.settle(hold.job_id, (), "failed")
        return "failed"
    state = load_job_state(instance, spec, hold.job_id, failure_details=False)
    final = state.status if state.status in FINAL else None
    if state.latest is None and final is None:
        try:
            age = now - job_id_created_at(hold.job_id)
        except ValueError:
            age = NEVER_LAUNCHED_SECONDS
        final = "not_started" if age >= NEVER_LAUNCHED_SECONDS else None
    store.settle(hold.job_id, state.completed, final)
    if final is None:
        later = CHECK_WAITING_SECONDS if state.status == "pending_retry" else CHECK_RUNNING_SECONDS
        store.check_later(hold.job_id, now + later)
    return final


def evaluate_credits(
    context: dg.SensorEvaluationContext,
    specs: dict[str, WorkflowSpec],
    predictions: StateDatabase,
    clock: Clock = time.time,
) -> dg.SkipReason:
    """One tick: settle the due holds."""
    store = CreditStore(predictions.store().engine, clock=clock)
    versions = SpecVersions(predictions.store())
    now = clock()
    closed = 0
    holds = store.open_holds(BATCH, now)
    for hold in holds:
        try:
            closed += settle_hold(context.instance, specs, store, hold, now, versions) is not None
        except Exception:
            context.log.exception("job %s: credits not settled this tick", hold.job_id)
            store.check_later(hold.job_id, now + CHECK_WAITING_SECONDS)
    # Idempotency keys are answered again for 24 h only: older ones go (one indexed delete).
    purged = IdempotencyStore(store.engine, clock=clock).purge()
    return dg.SkipReason(f"{len(holds)} holds looked at, {closed} closed, {purged} keys purged")


def make_credits_sensor(
    specs: dict[str, WorkflowSpec], clock: Clock = time.time
) -> dg.SensorDefinition:
    """The credits sensor over these workflows; tests pass a fake `clock`."""

    @dg.sensor(
        name=CREDITS_SENSOR_NAME,
        minimum_interval_seconds=2,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Captures each completed step's credits and releases a final job's rest.",
    )
    def credits_sensor(context: dg.SensorEvaluationContext, predictions: StateDatabase):
        return evaluate_credits(context, specs, predictions, clock)

    return credits_sensor
