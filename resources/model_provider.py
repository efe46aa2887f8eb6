"""The model provider interface: start one model on one input, and settle it later.

A generation step never waits for its model. It `prepare`s the call, records the
intent (wf_store), `submit`s, and its run ends. The prediction ends at the provider;
a webhook or a poll (`fetch`) records that; a continuation run `collect`s the output
(or raises `failure`). After a crash between the intent and the provider's answer,
`find` looks for the prediction that may already exist before anything is created.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import dagster as dg

from resources.media_storage import MediaStorage, StoredMedia
from wf_core.errors import HardError, WorkflowError

if TYPE_CHECKING:
    from wf_core.models import ModelSpec
    from wf_store.predictions import Prediction

ProgressFn = Callable[[int, str], None]


@dataclass(frozen=True)
class GenerationRequest:
    """What a step asks of a model: the task (step kind), model, prompt and input media."""

    job_id: str
    step: str
    task: str
    model: str
    prompt: str | None
    source: StoredMedia
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GeneratedMedia:
    """A model's output: the bytes and format, plus provenance from the provider."""

    data: bytes
    format: str
    provider: str
    provider_url: str | None = None
    prediction_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PreparedCall:
    """Exactly what a create will send, and a digest that names the input stably."""

    provider_model: str
    provider_input: dict[str, Any]
    # Names the source media by id (signed URLs change on every call).
    digest: str


@dataclass(frozen=True)
class ProviderPrediction:
    """The provider's view of one prediction (Replicate's status words)."""

    id: str
    status: str
    progress: int | None = None
    output: Any = None
    error: Any = None
    # When the provider says it will be done (the offline provider knows; Replicate not).
    expected_at: float | None = None

    def as_update(self) -> dict[str, Any]:
        """As the store's provider update (the shape of a webhook body)."""
        return {
            "id": self.id,
            "status": self.status,
            "progress": self.progress,
            "output": self.output,
            "error": self.error,
        }


class ModelProvider(dg.ConfigurableResource, ABC):
    """Runs models. Raises RetryableError or HardError with an API.md error_type."""

    @property
    @abstractmethod
    def provider_name(self) -> str:
        """Short name recorded in checkpoints and failure records."""

    def credential_fingerprint(self) -> str | None:
        """A short hash of the configured key (never the key), to notice it was replaced."""
        return None

    def check_auth(self) -> bool:
        """Whether the provider accepts the configured key right now."""
        return True

    @property
    def sends_webhooks(self) -> bool:
        """Whether `submit` asks the provider to call us back when a prediction ends."""
        return False

    def model_for(self, request: GenerationRequest) -> ModelSpec:
        """The registry entry of the request's model; model_not_found before any call."""
        # Imported here: the registry validates its tasks against the step kinds, which
        # import this module.
        from wf_core.models import MODELS

        model = MODELS.get(request.model)
        details = {"provider": self.provider_name, "model": request.model}
        if model is None:
            raise HardError("model_not_found", f"unknown model {request.model!r}", **details)
        if request.task not in model.tasks:
            message = f"{request.model} cannot run {request.task}"
            raise HardError("model_not_found", message, **details)
        return model

    @abstractmethod
    def prepare(self, request: GenerationRequest, media: MediaStorage) -> PreparedCall:
        """The call a create would send for `request` (no call is made)."""

    @abstractmethod
    def submit(
        self, call: PreparedCall, intent: Prediction, webhook_url: str | None
    ) -> ProviderPrediction:
        """Create the prediction recorded as `intent`; classified errors when refused."""

    def create_may_have_arrived(self, error: WorkflowError) -> bool:
        """Whether a create that raised `error` may still have made a prediction (no answer)."""
        return error.error_type in ("timeout", "server_unavailable")

    @abstractmethod
    def find(
        self, intent: Prediction, taken: Callable[[str], bool] = lambda _: False
    ) -> ProviderPrediction | None:
        """The prediction a create for `intent` may have made before a crash, or None.

        `taken(prediction_id)` is true for a prediction another row already owns: a
        match by input alone must not adopt it.
        """

    @abstractmethod
    def fetch(self, prediction: Prediction) -> ProviderPrediction | None:
        """The provider's current view of a submitted prediction; None if it lost it."""

    def cancel(self, prediction: Prediction) -> None:
        """Ask the provider to stop a prediction nobody needs any more (best effort)."""
        return None

    @abstractmethod
    def collect(
        self, prediction: Prediction, request: GenerationRequest, media: MediaStorage
    ) -> GeneratedMedia:
        """The output of a succeeded prediction; RetryableError if it is gone."""

    @abstractmethod
    def failure(self, prediction: Prediction) -> WorkflowError:
        """The classified error of a prediction that ended without an output."""
