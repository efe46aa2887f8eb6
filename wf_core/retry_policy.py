"""When may a job that failed with a retryable error run again, and on which model?"""

from __future__ import annotations

import random
from dataclasses import dataclass

from wf_core import tags as t
from wf_core.backoff import backoff_seconds
from wf_core.circuit_breaker import BreakerBoard
from wf_core.config import SharedSettings
from wf_core.job_state import JobState, RunView
from wf_core.specs import WorkflowSpec
from wf_core.times import iso_to_epoch_seconds


@dataclass(frozen=True)
class RetrySettings:
    """Tunable waits (seconds) of the retry policy."""

    backoff_base: float = 10.0
    backoff_cap: float = 600.0
    quota_cooldown: float = 60.0
    quota_cooldown_cap: float = 1800.0
    rate_limit_default: float = 60.0
    auth_check_interval: float = 60.0


@dataclass(frozen=True)
class Decision:
    """Launch now (maybe on another model, maybe as a quota probe) or wait."""

    launch: bool
    reason: str
    model: str | None = None
    probe_key: str | None = None
    not_before: float | None = None


def _tag_time(run: RunView, tag: str) -> float | None:
    """A time tag of the run (ISO-8601) as epoch seconds; None if it has none."""
    value = run.tags.get(tag)
    return iso_to_epoch_seconds(value) if value else None


def quota_key(run: RunView) -> str:
    """The breaker key of a quota failure: provider and model."""
    return f"{run.tags.get(t.PROVIDER, 'unknown')}/{run.tags.get(t.MODEL, 'unknown')}"


def backoff_delay(run: RunView, attempts: int, settings: RetrySettings) -> float:
    """Exponential backoff with full jitter, seeded by the run so a restart agrees."""
    jitter = random.Random(run.run_id)
    return backoff_seconds(attempts, settings.backoff_base, settings.backoff_cap, jitter)


def fallback_model(spec: WorkflowSpec, step: str, failed_model: str | None) -> str | None:
    """The next model of the step's chain after the one that failed, if any."""
    step_spec = spec.step(step)
    chain = [step_spec.default_model, *step_spec.fallback_models]
    if failed_model not in chain:
        return None
    later = chain[chain.index(failed_model) + 1 :]
    return next((m for m in later if m != failed_model), None)


def scheduled_retry_at(
    spec: WorkflowSpec, state: JobState, run: RunView, settings: RetrySettings
) -> float | None:
    """When the retry policy lets the job run again, where that is known in advance.

    The one rule for the sensor (`decide`) and the bridge (`next_retry_at`): a quota or
    rate-limit failure with a fallback model retries at once; a rate limit at its
    reset; timeouts and server errors after their backoff. None: it waits on a
    condition (the quota breaker's probe, a replaced or working key).
    """
    error_type = run.tags.get(t.ERROR_TYPE, "server_unavailable")
    step = state.failed_step or ""
    failed_at = _tag_time(run, t.FAILED_AT) or run.created_at
    if error_type in ("quota_exceeded", "rate_limit") and fallback_model(
        spec, step, run.tags.get(t.MODEL)
    ):
        return failed_at
    if error_type == "rate_limit":
        return _tag_time(run, t.RETRY_AT) or failed_at + settings.rate_limit_default
    if error_type in ("quota_exceeded", "invalid_key"):
        return None
    if run.tags.get(t.DEPENDENCY_OUTAGE):
        # Its own retry time: a steady pace while the dependency is down.
        return _tag_time(run, t.RETRY_AT) or failed_at + settings.rate_limit_default
    return failed_at + backoff_delay(run, state.attempts.get(step, 1), settings)


def next_retry_at(spec: WorkflowSpec, state: JobState, settings: RetrySettings) -> float | None:
    """When a pending_retry job will run again (None: unknown in advance, or not waiting)."""
    if state.status != "pending_retry" or state.latest is None:
        return None
    return scheduled_retry_at(spec, state, state.latest, settings)


def decide(
    spec: WorkflowSpec,
    state: JobState,
    run: RunView,
    now: float,
    board: BreakerBoard,
    settings: RetrySettings,
    key_changed: bool,
    auth_ok: bool,
) -> Decision:
    """The retry decision for a job whose latest run failed retryably."""
    error_type = run.tags.get(t.ERROR_TYPE, "server_unavailable")
    step = state.failed_step or ""
    if error_type in ("quota_exceeded", "rate_limit"):
        model = fallback_model(spec, step, run.tags.get(t.MODEL))
        if model:
            return Decision(True, f"{error_type}: falling back to {model}", model=model)
    if error_type == "quota_exceeded":
        key = quota_key(run)
        breaker = board.get(key)
        if breaker is None:
            return Decision(True, "quota breaker closed")
        if breaker.ready_for_probe(now):
            return Decision(True, f"quota probe for {key}", probe_key=key)
        reason = "quota probe in flight" if breaker.probing else "quota cooldown"
        return Decision(False, reason, not_before=breaker.reopen_at())
    if error_type == "invalid_key":
        if key_changed:
            return Decision(True, "the provider key was replaced")
        return Decision(auth_ok, "provider auth check passed" if auth_ok else "key still invalid")
    at = scheduled_retry_at(spec, state, run, settings)
    assert at is not None  # rate limits and backoffs always have a time
    reason = "rate limit reset" if error_type == "rate_limit" else "backoff elapsed"
    return Decision(now >= at, reason, not_before=at)


def retry_settings_of(config: SharedSettings) -> RetrySettings:
    """Retry waits, each overridable as RETRY_<FIELD> (seconds)."""
    return RetrySettings(
        **{name: getattr(config, f"retry_{name}") for name in RetrySettings.__dataclass_fields__}
    )


def retry_settings_from_env() -> RetrySettings:
    """`retry_settings_of` this process's environment."""
    return retry_settings_of(SharedSettings.from_env())
