"""Media storage on Cloudinary, through the official SDK's Upload API."""

from __future__ import annotations

import posixpath
from typing import Any
from urllib.parse import unquote, urlsplit

import cloudinary.exceptions
import cloudinary.uploader
import httpx
from pydantic import Field

from resources.cloudinary_errors import PROVIDER, from_httpx_error, from_response, from_sdk_error
from resources.media_storage import MediaStorage, ResourceType, StoredMedia
from wf_core.errors import RetryableError


class CloudinaryMediaStorage(MediaStorage):
    """Files on Cloudinary under deterministic public ids; a repeated put overwrites.

    The SDK is configured per call from these fields, never through its global config,
    so two resources with different accounts can live in one process.
    """

    cloudinary_url: str = Field(
        description="cloudinary://<api_key>:<api_secret>@<cloud_name> (CLOUDINARY_URL)."
    )
    upload_prefix: str | None = Field(
        default=None,
        description="Base URL of the Upload API; None means https://api.cloudinary.com.",
    )
    timeout: float = Field(default=60.0, gt=0, description="Seconds allowed for one request.")

    def sdk_options(self) -> dict[str, Any]:
        """The account options every SDK call gets, parsed from `cloudinary_url`."""
        parts = urlsplit(self.cloudinary_url)
        # Not parts.hostname, which lowercases: keep the cloud name exactly as configured.
        cloud_name = parts.netloc.rpartition("@")[2]
        if parts.scheme != "cloudinary" or not (parts.username and parts.password and cloud_name):
            raise RetryableError(
                "invalid_key",
                "CLOUDINARY_URL must look like cloudinary://<api_key>:<api_secret>@<cloud_name>",
                provider=PROVIDER,
            )
        return {
            "cloud_name": cloud_name,
            "api_key": unquote(parts.username),
            "api_secret": unquote(parts.password),
            # Passed even when None, so a global config cannot redirect our uploads.
            "upload_prefix": self.upload_prefix,
            "timeout": self.timeout,
        }

    def put(
        self, public_id: str, data: bytes, fmt: str, resource_type: ResourceType
    ) -> StoredMedia:
        """Upload `data` as `public_id`, replacing any earlier upload of the same id."""
        folder, name = posixpath.split(public_id)
        try:
            result = cloudinary.uploader.upload(
                data,
                filename=f"{name}.{fmt}",
                public_id=public_id,
                # Dynamic-folder accounts file assets by asset_folder, not by the id's path.
                asset_folder=folder or None,
                resource_type=resource_type,
                type="upload",
                overwrite=True,
                invalidate=True,
                unique_filename=False,
                use_filename=False,
                **self.sdk_options(),
            )
        except cloudinary.exceptions.Error as exc:
            raise from_sdk_error(exc) from exc
        return StoredMedia(
            url=result["secure_url"],
            public_id=public_id,
            format=result.get("format") or fmt,
            resource_type=resource_type,
            bytes=int(result.get("bytes", len(data))),
        )

    def read(self, media: StoredMedia) -> bytes:
        """Download a stored file from its delivery URL."""
        response = self._request("GET", media.url)
        if response.status_code >= 400:
            raise from_response(response)
        return response.content

    def exists(self, media: StoredMedia) -> bool:
        """Whether the delivery URL still serves the file (a HEAD; no Admin API quota)."""
        response = self._request("HEAD", media.url)
        if response.status_code == 404:
            return False
        if response.status_code >= 400:
            raise from_response(response)
        return True

    def provider_url(self, media: StoredMedia) -> str:
        """The delivery URL: public, so an outside model provider can fetch it."""
        return media.url

    def _request(self, method: str, url: str) -> httpx.Response:
        try:
            return httpx.request(method, url, timeout=self.timeout, follow_redirects=True)
        except httpx.HTTPError as exc:
            raise from_httpx_error(exc, url) from exc
