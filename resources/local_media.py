"""Media storage in a local folder, served by the bridge under /media/."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import dagster as dg
from pydantic import Field

from resources.json_files import write_bytes_atomic
from resources.media_storage import MediaStorage, ResourceType, StoredMedia
from wf_core.errors import HardError, RetryableError
from wf_core.media_types import CONTENT_TYPES

PROVIDER = "local_media"


def storage_fault(action: str, exc: OSError) -> RetryableError:
    """A fault of the media folder (permissions, full disk, missing mount) as retryable."""
    # The message reaches users and names no path of this machine; the log gets the path.
    dg.get_dagster_logger().warning(f"media storage could not {action}: {exc}")
    reason = os.strerror(exc.errno).lower() if exc.errno else type(exc).__name__
    message = f"Media storage could not {action} the file ({reason})"
    return RetryableError("server_unavailable", message, provider=PROVIDER)


class LocalMediaStorage(MediaStorage):
    """Files under `media_dir`, addressed as `<base_url>/<public_id>.<format>`."""

    media_dir: str = Field(description="Folder that holds the media (MEDIA_DIR).")
    base_url: str = Field(default="/media", description="URL prefix the bridge serves it at.")

    def path_of(self, public_id: str, fmt: str) -> Path:
        """The file of `public_id`, refusing ids that would leave `media_dir`."""
        root = Path(self.media_dir).resolve()
        path = (root / f"{public_id}.{fmt}").resolve()
        if not path.is_relative_to(root):
            raise ValueError(f"media id {public_id!r} leaves the media folder")
        return path

    def put(
        self, public_id: str, data: bytes, fmt: str, resource_type: ResourceType
    ) -> StoredMedia:
        path = self.path_of(public_id, fmt)
        try:
            write_bytes_atomic(path, data)
        except OSError as exc:
            raise storage_fault("store", exc) from None
        return StoredMedia(
            url=f"{self.base_url.rstrip('/')}/{public_id}.{fmt}",
            public_id=public_id,
            format=fmt,
            resource_type=resource_type,
            bytes=len(data),
        )

    def read(self, media: StoredMedia) -> bytes:
        path = self.path_of(media.public_id, media.format)
        try:
            return path.read_bytes()
        except FileNotFoundError as exc:
            if not path.parent.is_dir():
                # The job's folder is gone too: most likely an unmounted media volume.
                raise storage_fault("read", exc) from None
            name = f"{media.public_id}.{media.format}"
            raise HardError("internal", f"Media file {name} is missing from storage") from None
        except OSError as exc:
            raise storage_fault("read", exc) from None

    def exists(self, media: StoredMedia) -> bool:
        try:
            return self.path_of(media.public_id, media.format).is_file()
        except OSError as exc:
            raise storage_fault("check", exc) from None

    def provider_url(self, media: StoredMedia) -> str:
        # A remote provider cannot reach this machine's folder: send the bytes inline.
        content_type = CONTENT_TYPES.get(media.format, "application/octet-stream")
        encoded = base64.b64encode(self.read(media)).decode("ascii")
        return f"data:{content_type};base64,{encoded}"
