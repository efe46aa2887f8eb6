"""What a step kind is: a small function of (upstream outputs, step config, resources)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from resources.media_storage import MediaStorage, StoredMedia
from resources.model_provider import ModelProvider, ProgressFn
from wf_core.clock import Clock
from wf_core.polling import PollSettings
from wf_core.step_kinds import STEP_KIND_TABLE, StepKindInfo
from wf_store.predictions import PredictionStore

if TYPE_CHECKING:
    from wf_assets.kinds.generate import Finished, Parked


@dataclass(frozen=True)
class Upstream:
    """An upstream step's checkpointed output, with the kind that made it."""

    step: str
    kind: str
    output: dict[str, Any]

    def media(self) -> StoredMedia:
        """The media file this output points at (our copy, never the provider's)."""
        return StoredMedia(
            url=self.output[STEP_KIND_TABLE[self.kind].url_field],
            public_id=self.output["public_id"],
            format=self.output["format"],
            resource_type=self.output.get("resource_type", "image"),
            bytes=self.output.get("bytes", 0),
        )


@dataclass
class StepContext:
    """Everything a kind's function may use for one step of one job."""

    job_id: str
    step: str
    model: str | None
    prompt: str | None
    upstream: list[Upstream]
    provider: ModelProvider
    media: MediaStorage
    store: PredictionStore | None = None
    run_id: str = ""
    attempt: int = 1
    workflow_id: str = ""
    # Where the provider calls back (`<PUBLIC_BASE_URL>/hooks/replicate`); None: polling only.
    webhook_url: str | None = None
    poll_settings: PollSettings = field(default_factory=PollSettings)
    clock: Clock = time.time
    source_path: str | None = None
    progress: ProgressFn = field(default=lambda percent, message: None)

    @property
    def predictions(self) -> PredictionStore:
        """The prediction store (generation kinds need one)."""
        if self.store is None:
            raise RuntimeError(f"step {self.step!r} needs a prediction store")
        return self.store


@dataclass(frozen=True)
class StepKind:
    """A registered step kind: its row of the core table and the function that runs it."""

    info: StepKindInfo
    run: Callable[[StepContext], Finished | Parked]

    @property
    def name(self) -> str:
        """The kind's name, as specs write it."""
        return self.info.name

    @property
    def url_field(self) -> str:
        """The output field that holds the media URL."""
        return self.info.url_field

    @property
    def needs_model(self) -> bool:
        """Whether the kind calls a model."""
        return self.info.needs_model
