"""The alerts sensor: evaluate the alert rules each tick and announce what changed.

Facts come from bounded reads: runs finished inside the window, runs started and
predictions asked longer ago than the stuck threshold, the quota breakers in the retry
sensor's cursor, and the retry queue's size (sampled into this sensor's cursor). The
rules (wf_core.alerting) say which conditions hold; `wf_alerts` says which were already
announced, so each condition sends one message when it starts and one when it clears.
"""

from __future__ import annotations

import json
import time

import dagster as dg

from resources.alert_channels import AlertChannels
from resources.state_database import StateDatabase
from sensors.metrics_sensor import open_breakers
from wf_core import alerting
from wf_core import tags as t
from wf_core.alerting import AlertSettings, Announced, Firing, RunOutcome, StuckStep
from wf_core.clock import Clock
from wf_core.times import epoch_seconds_to_datetime
from wf_store.alerts import AlertStore
from wf_store.retry_queue import RetryQueue
from wf_store.spec_versions import SpecVersions

ALERTS_SENSOR_NAME = "workflow_alerts_sensor"
MAX_RUNS = 5000
STEP_EVENTS = {
    dg.DagsterEventType.STEP_START,
    dg.DagsterEventType.STEP_SUCCESS,
    dg.DagsterEventType.STEP_FAILURE,
}


def recent_outcomes(instance: dg.DagsterInstance, since: float) -> list[RunOutcome]:
    """Our runs that succeeded or failed after `since` (a parked run is a pause, not one)."""
    records = instance.get_run_records(
        filters=dg.RunsFilter(
            statuses=[dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE],
            updated_after=epoch_seconds_to_datetime(max(0.0, since)),
        ),
        limit=MAX_RUNS,
    )
    outcomes = []
    for record in records:
        run = record.dagster_run
        if t.JOB_ID not in run.tags or t.STOPPED in run.tags or t.PARKED_STEP in run.tags:
            continue
        outcomes.append(
            RunOutcome(
                workflow=run.tags.get(t.WORKFLOW, ""),
                job_id=run.tags[t.JOB_ID],
                run_id=run.run_id,
                failed=run.status == dg.DagsterRunStatus.FAILURE,
                provider=run.tags.get(t.PROVIDER, ""),
                error_message=run.tags.get(t.ERROR_MESSAGE, ""),
                at=record.end_time or record.update_timestamp.timestamp(),
            )
        )
    return outcomes


def stuck_steps(instance: dg.DagsterInstance, store: AlertStore, before: float) -> list[StuckStep]:
    """Steps of started runs that began before `before` and have not ended, and
    predictions asked before it that the provider has not answered."""
    stuck = []
    started = instance.get_run_records(
        filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]), limit=1000
    )
    for record in started:
        run = record.dagster_run
        if t.JOB_ID not in run.tags or (record.start_time or before) >= before:
            continue
        open_steps: dict[str, float] = {}
        for event in instance.all_logs(run.run_id, of_type=STEP_EVENTS):
            if event.step_key is None or event.dagster_event is None:
                continue
            if event.dagster_event.event_type == dg.DagsterEventType.STEP_START:
                open_steps[event.step_key] = event.timestamp
            else:
                open_steps.pop(event.step_key, None)
        for step, since in open_steps.items():
            if since < before:
                stuck.append(StuckStep(run.tags[t.JOB_ID], run.run_id, step.split("__")[-1], since))
    for row in store.waiting_since(before):
        stuck.append(
            StuckStep(
                row.job_id, row.run_id, row.step, row.created_at, f"waiting on {row.provider}"
            )
        )
    return stuck


def evaluate_alerts(
    instance: dg.DagsterInstance,
    store: AlertStore,
    queue: RetryQueue,
    channels: AlertChannels,
    settings: AlertSettings,
    now: float,
    cursor: str | None,
) -> tuple[list[alerting.Message], str]:
    """One tick: the messages delivered and the new cursor (retry queue samples)."""
    samples: list[tuple[float, int]] = [
        (float(at), int(n))
        for at, n in json.loads(cursor or "[]")
        if now - at <= settings.queue_window and at <= now
    ]
    samples.append((now, queue.count()))
    window = max(settings.failure_window, settings.storage_window)
    outcomes = recent_outcomes(instance, now - window)
    firing: list[Firing] = [
        *alerting.failure_rate(outcomes, now, settings),
        *alerting.storage_failures(outcomes, now, settings),
        *alerting.stuck_steps(
            stuck_steps(instance, store, now - settings.stuck_after), now, settings
        ),
        *alerting.open_breakers(
            {k: b.opened_at for k, b in open_breakers(instance).breakers.items()}, now, settings
        ),
        *alerting.queue_growing(samples, now, settings),
        *alerting.ownerless_jobs(
            [
                (e.job_id, e.action, e.at)
                for e in SpecVersions(queue.store).owner_events(
                    since=now - settings.ownerless_window
                )
                if e.action != "finished"
            ],
            now,
            settings,
        ),
    ]
    sent = []
    titles = {f.key: f.title for f in firing}
    announced = {k: Announced(title, at) for k, (title, at) in store.announced().items()}
    store.held([key for key in titles if key in announced], now)
    for message in alerting.transitions(announced, firing, now, settings):
        if not channels.deliver(message):
            continue  # nothing took it: announced next tick instead
        if message.kind == "started":
            store.started(message.key, titles[message.key], now)
        else:
            store.cleared(message.key, now)
        sent.append(message)
    return sent, json.dumps(samples)


def make_alerts_sensor(
    settings: AlertSettings, clock: Clock = time.time, running: bool = False
) -> dg.SensorDefinition:
    """The alerts sensor; on by default only when a channel is configured (`running`)."""

    @dg.sensor(
        name=ALERTS_SENSOR_NAME,
        minimum_interval_seconds=max(1, int(settings.check_interval)),
        default_status=(
            dg.DefaultSensorStatus.RUNNING if running else dg.DefaultSensorStatus.STOPPED
        ),
        description="Announces failure rates, stuck steps, storage failures, open breakers "
        "and a growing retry queue, once when each starts and once when it clears.",
    )
    def workflow_alerts_sensor(
        context: dg.SensorEvaluationContext,
        predictions: StateDatabase,
        alert_channels: AlertChannels,
    ) -> dg.SensorResult:
        store = predictions.store()
        sent, cursor = evaluate_alerts(
            context.instance,
            AlertStore(store),
            RetryQueue(store),
            alert_channels,
            settings,
            clock(),
            context.cursor,
        )
        for message in sent:
            context.log.info(f"alert {message.kind}: {message.subject}")
        return dg.SensorResult(cursor=cursor)

    return workflow_alerts_sensor
