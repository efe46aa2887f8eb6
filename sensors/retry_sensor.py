"""The retry sensor: resume jobs that failed retryably, once the condition is resolved.

Each tick, in one pass over the instance (not a run-status sensor, which handles
only 5 runs per tick):
1. fail runs whose worker died (crash_detector);
2. take in failed runs updated since the cursor: retryable ones are tagged
   `wf/retry_state=waiting`, quota failures open their breaker;
3. settle quota probes;
4. for the waiting runs whose check time has come (the retry queue, wf_store), at most
   `DECISIONS_PER_TICK`, skipping those behind an open quota breaker: decide
   (retry_policy) and launch the failed step and everything downstream, reusing
   checkpoints. A run that must wait is given the time its decision can next change.
A tick's cost follows the decisions due, not the number of waiting jobs: 5,000 jobs
behind one open breaker cost one query. When a breaker closes, its jobs are released
`DECISIONS_PER_TICK` at a time. State lives in run tags, the queue and the cursor; run
keys make a relaunch idempotent, so a daemon restart neither duplicates nor loses a
retry.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import dagster as dg

from resources.model_provider import ModelProvider
from resources.state_database import StateDatabase
from sensors.crash_detector import crash_tags, fail_dead_runs
from sensors.job_end import end_job_request
from wf_assets.asset_keys import asset_key_for
from wf_assets.job_runs import job_run_views, load_job_state, run_view
from wf_core import tags as t
from wf_core.circuit_breaker import BreakerBoard
from wf_core.clock import Clock
from wf_core.control import plan_retry
from wf_core.job_state import ACTIVE, JobState, RunView
from wf_core.retry_policy import Decision, RetrySettings, decide, fallback_model, quota_key
from wf_core.specs import WorkflowSpec, continuation_problem
from wf_core.times import epoch_seconds_to_datetime
from wf_store.retry_queue import RetryQueue, Waiting
from wf_store.spec_versions import SpecVersions

RETRY_SENSOR_NAME = "workflow_retry_sensor"
PAGE = 500
# Runs whose update lands in the same instant as the cursor are read again;
# tags make that idempotent.
CURSOR_OVERLAP_SECONDS = 2.0
# A quota probe the sensor asked for but whose run never appeared frees its slot after this.
PROBE_START_TIMEOUT_SECONDS = 120.0
# Full decisions (a job-state read each) per tick; also the release rate of a closed breaker.
DECISIONS_PER_TICK = 50
# A decision that waits on no known time (a newer run in flight, a key still refused)
# is looked at again after this.
RECHECK_SECONDS = 30.0
# Runs behind a breaker looked at for its probe, oldest first.
PROBE_CANDIDATES = 5


@dataclass
class RetryCursor:
    """The sensor's durable state between ticks."""

    updated_after: float = 0.0
    breakers: dict = field(default_factory=dict)
    auth_checks: dict = field(default_factory=dict)
    # Whether runs tagged waiting before the retry queue existed were queued.
    queue_backfilled: bool = False

    @classmethod
    def load(cls, raw: str | None) -> RetryCursor:
        """From the JSON the sensor stored last tick."""
        return cls(**json.loads(raw)) if raw else cls()

    def dump(self) -> str:
        """As JSON for Dagster to store."""
        return json.dumps(self.__dict__, sort_keys=True)


@contextmanager
def _one_job(log, run: dg.DagsterRun) -> Iterator[None]:
    """One job's trouble is logged and skipped: it must never cost every other job its tick."""
    try:
        yield
    except Exception:
        log.exception(f"retry sensor: job {run.tags.get(t.JOB_ID)} (run {run.run_id}) skipped")


def _failed_since(instance: dg.DagsterInstance, after: float) -> list[dg.RunRecord]:
    since = epoch_seconds_to_datetime(max(0.0, after - CURSOR_OVERLAP_SECONDS))
    return _all_records(
        instance, dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE], updated_after=since)
    )


def _all_records(instance: dg.DagsterInstance, filters: dg.RunsFilter) -> list[dg.RunRecord]:
    records: list[dg.RunRecord] = []
    while True:
        cursor = records[-1].dagster_run.run_id if records else None
        page = instance.get_run_records(filters=filters, limit=PAGE, cursor=cursor)
        records.extend(page)
        if len(page) < PAGE:
            return records


def _intake(instance, records, specs, board: BreakerBoard, settings, now: float, log, queue):
    for record in records:
        run = record.dagster_run
        if t.JOB_ID not in run.tags or t.RETRY_STATE in run.tags:
            continue
        with _one_job(log, run):
            _take_in(instance, record, specs, board, settings, now, queue)


def _take_in(instance, record, specs, board: BreakerBoard, settings, now: float, queue) -> None:
    run = record.dagster_run
    if t.ERROR_TYPE not in run.tags:
        # Failed without our handler running (worker killed, code server noticed its
        # child died, run monitoring): a crash, retryable, counted against its step.
        spec = specs.get(run.tags.get(t.WORKFLOW, ""))
        message = "The run worker died before its step finished"
        tags = crash_tags(instance, spec, run.tags[t.JOB_ID], message, now)
        instance.add_run_tags(run.run_id, tags)
        run = instance.get_run_by_id(run.run_id)
    retryable = run.tags.get(t.RETRYABLE) == "true"
    if retryable:
        _enqueue(queue, run, specs, now)
    state = t.RETRY_WAITING if retryable else t.RETRY_DONE
    instance.add_run_tags(run.run_id, {t.RETRY_STATE: state})
    if retryable and run.tags.get(t.ERROR_TYPE) == "quota_exceeded":
        view = replace(run_view(record), tags=dict(run.tags))
        board.on_quota_failure(
            quota_key(view),
            run.tags[t.JOB_ID],
            view.attempt,
            now,
            settings.quota_cooldown,
            settings.quota_cooldown_cap,
        )


def _enqueue(queue: RetryQueue, run: dg.DagsterRun, specs, now: float) -> None:
    """Queue a run that failed retryably (before its tag says so: a crash in between
    leaves it untagged, and the next tick's intake queues it again, harmlessly).

    A quota failure waits behind its breaker unless the step has a fallback model.
    """
    error_type = run.tags.get(t.ERROR_TYPE, "server_unavailable")
    key = None
    spec = specs.get(run.tags.get(t.WORKFLOW, ""))
    step = run.tags.get(t.FAILED_STEP, "")
    if (
        error_type == "quota_exceeded"
        and spec is not None
        and not fallback_model(spec, step, run.tags.get(t.MODEL))
    ):
        key = quota_key(RunView(run.run_id, run.status.value, dict(run.tags), now))
    queue.add(run.run_id, run.tags[t.JOB_ID], run.tags.get(t.WORKFLOW, ""), error_type, key, now)


def _backfill(instance: dg.DagsterInstance, queue: RetryQueue, specs, now: float) -> None:
    """Runs tagged waiting before the queue existed (an upgrade): queued once."""
    waiting = dg.RunsFilter(
        statuses=[dg.DagsterRunStatus.FAILURE], tags={t.RETRY_STATE: t.RETRY_WAITING}
    )
    for record in _all_records(instance, waiting):
        _enqueue(queue, record.dagster_run, specs, now)


def _settle_probes(instance, board: BreakerBoard, now: float, log) -> None:
    for key, breaker in list(board.breakers.items()):
        if not breaker.probing or breaker.probe_job is None:
            continue
        runs = job_run_views(instance, breaker.probe_job)
        probe = next((r for r in runs if r.attempt == breaker.probe_attempt), None)
        if probe is None:
            if now - (breaker.probe_launched_at or now) > PROBE_START_TIMEOUT_SECONDS:
                log.warning(f"quota probe for {key} never started; releasing the slot")
                breaker.probe_job = breaker.probe_attempt = breaker.probe_launched_at = None
            continue
        if probe.status == "SUCCESS" or (
            probe.status == "FAILURE" and probe.tags.get(t.ERROR_TYPE) != "quota_exceeded"
        ):
            log.info(f"quota probe for {key} got through: releasing waiting jobs")
            board.close(key)


def _retry_request(
    spec: WorkflowSpec, parent: dg.DagsterRun, state: JobState, decision: Decision
) -> dg.RunRequest:
    plan = plan_retry(spec, state, parent.run_config, "retry_sensor", decision.model)
    tags = {**plan.tags, "wf/retry_reason": decision.reason}
    if decision.probe_key:
        tags["wf/quota_probe"] = decision.probe_key
    return dg.RunRequest(
        # One run key per job and attempt: a tick repeated after a daemon restart
        # asks for the same run, and Dagster launches it once.
        run_key=f"{plan.job_id}:attempt-{tags[t.ATTEMPT]}",
        job_name=plan.job_name,
        partition_key=plan.job_id,
        asset_selection=[asset_key_for(spec, step) for step in plan.steps],
        run_config=plan.run_config,
        tags=tags,
    )


def _auth_ok(provider: ModelProvider, cursor: RetryCursor, settings, now: float) -> bool:
    name = provider.provider_name
    last = cursor.auth_checks.get(name)
    if last and now - last["at"] < settings.auth_check_interval:
        return last["ok"]
    ok = bool(provider.check_auth())
    cursor.auth_checks[name] = {"at": now, "ok": ok}
    return ok


def evaluate_retries(
    context: dg.SensorEvaluationContext,
    specs: dict[str, WorkflowSpec],
    provider: ModelProvider,
    queue: RetryQueue,
    settings: RetrySettings,
    clock: Clock,
) -> dg.SensorResult:
    """One tick of the retry sensor; `clock()` is now, in epoch seconds, for the whole tick."""
    instance, log, now = context.instance, context.log, clock()
    cursor = RetryCursor.load(context.cursor)
    board = BreakerBoard.from_dict(cursor.breakers)
    fail_dead_runs(instance, specs, log, now)
    failed = _failed_since(instance, cursor.updated_after)
    _intake(instance, failed, specs, board, settings, now, log, queue)
    if failed:
        newest = max(r.update_timestamp.timestamp() for r in failed)
        cursor.updated_after = max(cursor.updated_after, newest)
    _settle_probes(instance, board, now, log)

    if not cursor.queue_backfilled:
        _backfill(instance, queue, specs, now)
        cursor.queue_backfilled = True
    requests = []
    for group in _due(queue, board, now):
        for row in group:
            request = _decide_row(
                instance, queue, row, specs, provider, settings, board, cursor, now, log
            )
            if request is not None:
                requests.append(request)
                break  # one probe per breaker
    cursor.breakers = board.to_dict()
    return dg.SensorResult(run_requests=requests, cursor=cursor.dump())


def _due(queue: RetryQueue, board: BreakerBoard, now: float) -> list[list[Waiting]]:
    """The queued runs to decide this tick, in groups: each due run not held by an open
    breaker alone, and for each breaker taking a probe now, its oldest runs (the first
    that can still go is the probe; the others were superseded meanwhile)."""
    # Behind an open breaker only the probe goes: the rest wait for it to close.
    groups = [[row] for row in queue.due(now, DECISIONS_PER_TICK, list(board.breakers))]
    for key, breaker in board.breakers.items():
        if breaker.ready_for_probe(now):
            groups.append(queue.oldest_behind(key, PROBE_CANDIDATES))
    return groups


def _decide_row(instance, queue, row, specs, provider, settings, board, cursor, now, log):
    """Decide one queued run and reschedule or drop it; its retry request, if it goes."""
    record = instance.get_run_record_by_id(row.run_id)
    if record is None:
        queue.remove([row.run_id])
        return None
    with _one_job(log, record.dagster_run):
        request, check_at = _consider(
            instance,
            queue.store,
            record.dagster_run,
            specs,
            provider,
            settings,
            board,
            cursor,
            now,
            log,
        )
        if check_at is None:
            queue.remove([row.run_id])
        else:
            queue.check_later(row.run_id, check_at)
        return request
    queue.check_later(row.run_id, now + RECHECK_SECONDS)  # it failed: not every tick
    return None


def _consider(
    instance, store, run, specs, provider, settings, board, cursor, now, log
) -> tuple[dg.RunRequest | None, float | None]:
    """The retry request for a waiting run, if it goes now, and when to look at it
    again (None: it waits no more)."""
    spec = specs.get(run.tags.get(t.WORKFLOW, ""))
    job_id = run.tags[t.JOB_ID]
    if spec is None:
        instance.add_run_tags(run.run_id, {t.RETRY_STATE: t.RETRY_DONE})
        return None, None
    current, spec = spec, SpecVersions(store).spec_for_job(job_id) or spec
    state = load_job_state(instance, spec, job_id, failure_details=False)
    latest = state.latest
    if latest is None or latest.run_id != run.run_id:
        if latest is None or latest.status not in ACTIVE:
            instance.add_run_tags(run.run_id, {t.RETRY_STATE: t.RETRY_DONE})
            return None, None
        return None, now + RECHECK_SECONDS  # a newer run is in flight: see how it ends
    if state.status != "pending_retry":
        final = t.RETRY_EXHAUSTED if state.max_attempts_exceeded else t.RETRY_DONE
        instance.add_run_tags(run.run_id, {t.RETRY_STATE: final})
        if final == t.RETRY_EXHAUSTED:
            log.info(f"job {job_id}: maximum retry attempts exceeded at {state.failed_step}")
        return None, None
    key_changed = bool(
        run.tags.get(t.KEY_FINGERPRINT)
        and run.tags[t.KEY_FINGERPRINT] != provider.credential_fingerprint()
    )
    auth_ok = False
    if run.tags.get(t.ERROR_TYPE) == "invalid_key" and not key_changed:
        auth_ok = _auth_ok(provider, cursor, settings, now)
    decision = decide(spec, state, latest, now, board, settings, key_changed, auth_ok)
    if not decision.launch:
        if run.tags.get(t.ERROR_TYPE) == "quota_exceeded":
            return None, now  # its breaker holds it back, and lets it go when it closes
        later = decision.not_before if decision.not_before and decision.not_before > now else None
        if run.tags.get(t.ERROR_TYPE) == "invalid_key" and later is None:
            later = now + settings.auth_check_interval
        return None, later or now + RECHECK_SECONDS
    problem = continuation_problem(spec, current, state.next_steps)
    if problem:
        log.warning(f"job {job_id} cannot continue: {problem}")
        instance.add_run_tags(run.run_id, {t.RETRY_STATE: t.RETRY_DONE})
        return end_job_request(current, job_id, run, problem, store), None
    if decision.probe_key:
        board.start_probe(decision.probe_key, job_id, latest.attempt + 1, now)
    log.info(f"job {job_id}: retrying {state.failed_step} ({decision.reason})")
    # Kept due until the retry run is seen: a request lost with a daemon that died before
    # launching it is asked again next tick (same run key, so never twice).
    return _retry_request(spec, run, state, decision), now


def make_retry_sensor(
    specs: dict[str, WorkflowSpec],
    jobs: list,
    settings: RetrySettings | None = None,
    clock: Clock = time.time,
) -> dg.SensorDefinition:
    """The retry sensor over the workflow `jobs` built from `specs`; tests pass a fake `clock`."""
    settings = settings or RetrySettings()

    @dg.sensor(
        name=RETRY_SENSOR_NAME,
        # Dagster's daemon ticks at most every 5 s whatever this says.
        minimum_interval_seconds=5,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Resumes workflow jobs that failed retryably once the cause is resolved.",
        jobs=jobs,
    )
    def workflow_retry_sensor(
        context: dg.SensorEvaluationContext,
        model_provider: ModelProvider,
        predictions: StateDatabase,
    ):
        queue = RetryQueue(predictions.store())
        return evaluate_retries(context, specs, model_provider, queue, settings, clock)

    return workflow_retry_sensor
