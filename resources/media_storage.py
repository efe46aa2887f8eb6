"""The media storage interface: where a job's images and videos live."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Literal

import dagster as dg
from pydantic import Field

# Re-exported for resources.replicate_output, which checks output formats against it.

ResourceType = Literal["image", "video"]


@dataclass(frozen=True)
class StoredMedia:
    """A file in media storage: its public URL, its id there, format and kind."""

    url: str
    public_id: str
    format: str
    resource_type: ResourceType
    bytes: int

    def as_dict(self) -> dict:
        """The fields as a plain dict."""
        return asdict(self)


def media_public_id(job_id: str, name: str) -> str:
    """The deterministic id of a job's file: one folder per job, one name per step."""
    return f"jobs/{job_id}/{name}"


class MediaStorage(dg.ConfigurableResource, ABC):
    """Stores media per job under deterministic ids; a repeated put replaces the file."""

    staging_url: str | None = Field(
        default=None,
        description=(
            "Folder or fsspec URL where a model's output waits until this storage takes it "
            "(STAGING_URL); None means `_staged` under the checkpoint store."
        ),
    )

    @abstractmethod
    def put(
        self, public_id: str, data: bytes, fmt: str, resource_type: ResourceType
    ) -> StoredMedia:
        """Store `data` under `public_id`, replacing what was there."""

    @abstractmethod
    def read(self, media: StoredMedia) -> bytes:
        """The bytes of a stored file."""

    @abstractmethod
    def exists(self, media: StoredMedia) -> bool:
        """Whether a stored file is (still) there."""

    def provider_url(self, media: StoredMedia) -> str:
        """A URL an outside model provider can fetch the file from."""
        return media.url
