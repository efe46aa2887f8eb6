"""The engine's state database as a Dagster resource, with where providers call us back."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from wf_core.polling import PollSettings
from wf_store.predictions import PredictionStore, shared_store

WEBHOOK_PATH = "/hooks/replicate"


class StateDatabase(dg.ConfigurableResource):
    """The engine's state database (predictions, retry queue, credits, spec versions...),
    with how parked predictions are followed up. Its resource key stays `predictions`."""

    url: str = Field(description="SQLAlchemy URL of the engine's state database.")
    public_base_url: str | None = Field(
        default=None, description="PUBLIC_BASE_URL: providers call <it>/hooks/replicate."
    )
    poll_interval_seconds: float = Field(default=PollSettings.interval, gt=0)
    poll_max_per_second: float = Field(default=PollSettings.max_per_second, gt=0)
    handoff_batch: int = Field(default=PollSettings.handoff_batch, gt=0)

    def store(self) -> PredictionStore:
        """The prediction store, shared within this process; the database is upgraded to
        the newest revision on first use."""
        return shared_store(self.url)

    @property
    def webhook_url(self) -> str | None:
        """The receiver's address, or None when we only poll."""
        return f"{self.public_base_url.rstrip('/')}{WEBHOOK_PATH}" if self.public_base_url else None

    def poll_settings(self) -> PollSettings:
        """The poller's limits."""
        return PollSettings(
            interval=self.poll_interval_seconds,
            max_per_second=self.poll_max_per_second,
            handoff_batch=self.handoff_batch,
        )
