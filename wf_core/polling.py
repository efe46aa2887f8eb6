"""When to ask a provider about a parked prediction, and how much to hand off per tick."""

from __future__ import annotations

from dataclasses import dataclass

from wf_core.config import EngineSettings


@dataclass(frozen=True)
class PollSettings:
    """The poller's and hand-off sensor's limits (environment: `poll_settings_from_env`)."""

    # With webhooks on: a prediction with no webhook is polled after this, then this often,
    # so a lost webhook delays its job by at most one interval.
    interval: float = 30.0
    # Polling only (no public URL): start this soon, back off to `interval` (a quarter of
    # the prediction's age: a long prediction is asked less often).
    min_interval: float = 2.0
    # A global cap on provider reads, shared by every prediction.
    max_per_second: float = 20.0
    # The sensor's tick (Dagster's daemon wakes sensors at most every 5 s).
    tick_seconds: float = 5.0
    # Continuation runs requested per tick (a RunRequest costs ~0.3 s of a tick).
    handoff_batch: int = 40
    # A hand-off whose run never appeared is requested again (same run key) after this.
    handoff_stale_after: float = 120.0
    cancel_batch: int = 25

    @property
    def polls_per_tick(self) -> int:
        """How many provider reads one tick may make."""
        return max(1, int(self.max_per_second * self.tick_seconds))


def first_poll_at(
    now: float, expected_at: float | None, webhooks: bool, settings: PollSettings
) -> float:
    """When to first ask about a prediction created at `now`."""
    if expected_at is not None:
        return max(now, expected_at)
    return now + (settings.interval if webhooks else settings.min_interval)


def next_poll_at(
    now: float,
    created_at: float,
    expected_at: float | None,
    webhooks: bool,
    settings: PollSettings,
) -> float:
    """When to ask again about a prediction still running at `now`."""
    if expected_at is not None and expected_at > now:
        return expected_at
    if webhooks:
        return now + settings.interval
    age = max(0.0, now - created_at)
    return now + min(settings.interval, max(settings.min_interval, age / 4))


def poll_settings(config: EngineSettings) -> PollSettings:
    """Settings from POLL_INTERVAL_SECONDS, POLL_MAX_PER_SECOND, HANDOFF_BATCH."""
    return PollSettings(
        interval=config.poll_interval_seconds,
        max_per_second=config.poll_max_per_second,
        handoff_batch=config.handoff_batch,
    )


def poll_settings_from_env() -> PollSettings:
    """`poll_settings` of this process's environment."""
    return poll_settings(EngineSettings.from_env())
