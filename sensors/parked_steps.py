"""The parked-steps sensor: follow predictions that no process waits for.

Each tick, bounded whatever the number of parked jobs:
1. stop the predictions of cancelled jobs at the provider;
2. poll the parked predictions that are due (a lost webhook, or no public URL), at most
   `PollSettings.polls_per_tick` provider reads, in a few threads;
3. hand off completed predictions: one continuation run each (run key = the intent id,
   queue priority above new jobs), at most `handoff_batch` per tick, the oldest first.
   Each is claimed by compare-and-set first: the warm continuation worker
   (sensors/continuations.py) continues most of them within a fraction of a second, and
   this tick takes only what it left (a user at the fair-share cap, a worker that is down
   or died, a stale hand-off after `handoff_stale_after`).
The completions themselves are recorded by whoever saw them first (webhook receiver,
this poller, the run that created them): the store's compare-and-set makes it once.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import dagster as dg

from resources.model_provider import ModelProvider, ProviderPrediction
from resources.state_database import StateDatabase
from sensors.job_end import end_job_request
from wf_assets.asset_keys import asset_key_for
from wf_core import tags as t
from wf_core.clock import Clock
from wf_core.polling import PollSettings, next_poll_at
from wf_core.run_config import config_for_steps
from wf_core.specs import WorkflowSpec, continuation_problem
from wf_store.predictions import COMPLETED, Prediction, PredictionStore
from wf_store.spec_versions import SpecVersions
from wf_store.wakeups import workers_listening

PARKED_STEPS_SENSOR_NAME = "parked_steps_sensor"
POLL_THREADS = 8
WARM_GRACE_SECONDS = 2.0


def _cancel_requested(store: PredictionStore, provider: ModelProvider, batch: int, log) -> None:
    for row in store.cancel_requests(batch):
        try:
            if row.prediction_id and not row.terminal:
                provider.cancel(row)
        except Exception:
            log.exception(f"cancel of prediction {row.prediction_id} failed; abandoning it")
        store.abandon(row.id, "the job was cancelled")


def _fetch(provider: ModelProvider, row: Prediction) -> tuple[Prediction, object]:
    try:
        return row, provider.fetch(row)
    except Exception as exc:  # a classified provider error: try again next interval
        return row, exc


def poll_due(
    store: PredictionStore,
    provider: ModelProvider,
    settings: PollSettings,
    webhooks: bool,
    now: float,
    log,
) -> int:
    """Read the due parked predictions from the provider; returns how many completed."""
    due = store.due_for_poll(settings.polls_per_tick, now)
    if not due:
        return 0
    with ThreadPoolExecutor(min(POLL_THREADS, len(due))) as pool:
        answers = list(pool.map(lambda row: _fetch(provider, row), due))
    completed = 0
    for row, seen in answers:
        if isinstance(seen, ProviderPrediction) and seen.status in ("starting", "processing"):
            later = next_poll_at(now, row.created_at, row.expected_at, webhooks, settings)
            store.polled(row.id, seen.status, seen.progress, later)
            continue
        if isinstance(seen, ProviderPrediction):
            update = seen.as_update()
        elif seen is None:
            update = {"id": row.prediction_id, "status": "aborted", "error": "lost by provider"}
        else:
            log.warning(f"poll of prediction {row.prediction_id} failed: {seen}")
            later = now + settings.interval
            store.polled(row.id, row.provider_status or "starting", row.progress, later)
            continue
        completed += store.apply_provider_update(update, "poll")
    return completed


def continuation_request(
    spec: WorkflowSpec, row: Prediction, parent: dg.DagsterRun | None
) -> dg.RunRequest:
    """The run that finishes `row`'s step and goes on with the steps after it."""
    steps = spec.downstream_of({row.step})
    selection = [s.name for s in spec.steps if s.name in steps]
    parent_tags = parent.tags if parent else {}
    tags = t.job_tags(
        spec.id,
        row.job_id,
        parent_tags.get(t.USER, "unknown"),
        "continuation",
        attempt=row.attempt,
        parent_run=row.run_id,
    )
    tags[t.CONTINUES] = row.id
    tags[t.PRIORITY] = t.CONTINUATION_PRIORITY
    return dg.RunRequest(
        # One run per prediction: a hand-off repeated after a daemon restart or a stale
        # hand-off asks for the same run, and Dagster launches it once.
        run_key=f"continue:{row.id}",
        job_name=spec.job_name,
        partition_key=row.job_id,
        asset_selection=[asset_key_for(spec, name) for name in selection],
        run_config=config_for_steps(spec, parent.run_config if parent else None, selection),
        tags=tags,
    )


def _warm_worker_idle(instance: dg.DagsterInstance, store: PredictionStore) -> bool:
    """Whether a warm continuation worker listens and has no run in hand."""
    workers = workers_listening(store.engine)
    if workers == 0:
        return False
    statuses = [
        dg.DagsterRunStatus.STARTING,
        dg.DagsterRunStatus.STARTED,
        dg.DagsterRunStatus.CANCELING,
    ]
    warm = dg.RunsFilter(tags={t.WARM: list(t.WARM_VALUES)}, statuses=statuses)
    return instance.get_runs_count(warm) < workers


def evaluate_parked(
    context: dg.SensorEvaluationContext,
    specs: dict[str, WorkflowSpec],
    provider: ModelProvider,
    predictions: StateDatabase,
    clock: Clock,
) -> dg.SensorResult:
    """One tick; `clock()` is now, in epoch seconds."""
    store, settings, now = predictions.store(), predictions.poll_settings(), clock()
    webhooks = predictions.webhook_url is not None and provider.sends_webhooks
    _cancel_requested(store, provider, settings.cancel_batch, context.log)
    poll_due(store, provider, settings, webhooks, now, context.log)
    requests: list[dg.RunRequest] = []
    versions = SpecVersions(store)
    ready = store.ready_for_handoff(settings.handoff_batch, settings.handoff_stale_after, now)
    # An idle warm continuation worker was woken for each completion: it gets the first
    # `WARM_GRACE_SECONDS` (then this tick takes what it left: a limit reached). A busy
    # one (a burst) would make them wait: this tick takes them to the queue at once.
    idle = bool(ready) and _warm_worker_idle(context.instance, store)
    fresh = now - WARM_GRACE_SECONDS if idle else None
    for row in ready:
        if fresh is not None and row.state == COMPLETED and (row.completed_at or 0) > fresh:
            continue
        current = specs.get(row.workflow_id)
        if current is None:
            # Never thrown away: a paid output waits (its row stays `completed`) until a
            # load of the code location defines its workflow again; the owner check
            # counts and reports the job meanwhile.
            context.log.warning(
                f"prediction {row.id}: workflow {row.workflow_id} is not loaded here; kept"
            )
            continue
        spec = versions.spec_for_job(row.job_id) or current
        parent = context.instance.get_run_by_id(row.run_id) if row.run_id else None
        steps = [s.name for s in spec.steps if s.name in spec.downstream_of({row.step})]
        problem = continuation_problem(spec, current, steps)
        if problem:
            context.log.warning(f"job {row.job_id} cannot continue: {problem}")
            store.abandon(row.id, f"its job cannot continue: {problem}")
            requests.append(end_job_request(current, row.job_id, parent, problem, store))
            continue
        if not store.take_for_handoff(row, now):
            continue  # the warm continuation worker (or another claimer) took it first
        requests.append(continuation_request(spec, row, parent))
    if requests:
        context.log.info(f"handing off {len(requests)} completed predictions")
    return dg.SensorResult(run_requests=requests)


def make_parked_steps_sensor(
    specs: dict[str, WorkflowSpec], jobs: list, clock: Clock = time.time
) -> dg.SensorDefinition:
    """The sensor over the workflow `jobs`; tests pass a fake `clock`."""

    @dg.sensor(
        name=PARKED_STEPS_SENSOR_NAME,
        minimum_interval_seconds=1,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Polls parked predictions and starts the runs that finish their steps.",
        jobs=jobs,
    )
    def parked_steps_sensor(
        context: dg.SensorEvaluationContext,
        model_provider: ModelProvider,
        predictions: StateDatabase,
    ):
        return evaluate_parked(context, specs, model_provider, predictions, clock)

    return parked_steps_sensor
