"""A quota circuit breaker per provider and model, kept in the retry sensor's cursor.

Fifty jobs waiting on one exhausted quota must not all relaunch and fail again
together. The first quota failure opens the breaker; after a cooldown one probe
job is let through; its success closes the breaker and releases the rest; its
failure reopens it with a doubled cooldown. Never more than one probe in flight.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from wf_core.backoff import backoff_seconds


@dataclass
class Breaker:
    """One open (or probing) breaker."""

    opened_at: float
    cooldown: float
    probe_job: str | None = None
    probe_attempt: int | None = None
    probe_launched_at: float | None = None

    @property
    def probing(self) -> bool:
        """Whether a probe job is in flight."""
        return self.probe_job is not None

    def ready_for_probe(self, now: float) -> bool:
        """The cooldown has passed and no probe is in flight."""
        return not self.probing and now >= self.opened_at + self.cooldown

    def reopen_at(self) -> float:
        """When the next probe may go."""
        return self.opened_at + self.cooldown


class BreakerBoard:
    """All breakers by key (`provider/model`); absent means closed."""

    def __init__(self, breakers: dict[str, Breaker] | None = None) -> None:
        self.breakers = breakers or {}

    @classmethod
    def from_dict(cls, raw: dict[str, dict[str, Any]]) -> BreakerBoard:
        """Load from the cursor's JSON."""
        return cls({key: Breaker(**value) for key, value in raw.items()})

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Dump for the cursor's JSON."""
        return {key: asdict(value) for key, value in self.breakers.items()}

    def get(self, key: str) -> Breaker | None:
        """The breaker for `key`, or None when it is closed."""
        return self.breakers.get(key)

    def on_quota_failure(
        self, key: str, job_id: str, attempt: int, now: float, base: float, cap: float
    ) -> None:
        """A run failed on quota: open the breaker, or reopen it if that run was the probe."""
        breaker = self.breakers.get(key)
        if breaker is None:
            self.breakers[key] = Breaker(opened_at=now, cooldown=base)
        elif breaker.probe_job == job_id and breaker.probe_attempt == attempt:
            # One step further along the doubling schedule from the last cooldown.
            cooldown = backoff_seconds(2, breaker.cooldown, cap)
            self.breakers[key] = Breaker(opened_at=now, cooldown=cooldown)

    def start_probe(self, key: str, job_id: str, attempt: int, now: float) -> None:
        """Record that `job_id`'s attempt `attempt` is the probe for `key`."""
        breaker = self.breakers[key]
        breaker.probe_job, breaker.probe_attempt, breaker.probe_launched_at = job_id, attempt, now

    def close(self, key: str) -> None:
        """The probe got through: the quota is back."""
        self.breakers.pop(key, None)
