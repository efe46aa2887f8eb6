"""What a step kind is: a small function of (upstream outputs, step config, resources)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from resources.media_storage import MediaStorage, StoredMedia
from resources.model_provider import ModelProvider, ProgressFn


@dataclass(frozen=True)
class Upstream:
    """An upstream step's checkpointed output, with the kind that made it."""

    step: str
    kind: str
    output: dict[str, Any]

    def media(self) -> StoredMedia:
        """The media file this output points at (our copy, never the provider's)."""
        return StoredMedia(
            url=self.output[STEP_URL_FIELDS[self.kind]],
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
    source_path: str | None = None
    progress: ProgressFn = field(default=lambda percent, message: None)


@dataclass(frozen=True)
class StepKind:
    """A registered step kind: its function and what a spec may do with it."""

    name: str
    run: Callable[[StepContext], dict[str, Any]]
    step_types: frozenset[str]
    url_field: str
    needs_model: bool = True


# Filled in by the registry; Upstream.media() needs the URL field of any kind.
STEP_URL_FIELDS: dict[str, str] = {}
