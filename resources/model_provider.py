"""The model provider interface: run one model on one input for one job step."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import dagster as dg

from resources.media_storage import MediaStorage, StoredMedia
from wf_core.errors import HardError

if TYPE_CHECKING:
    from wf_core.models import ModelSpec

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
    def generate(
        self,
        request: GenerationRequest,
        media: MediaStorage,
        progress: ProgressFn | None = None,
    ) -> GeneratedMedia:
        """Run the request's model on its source media and return the output."""
