"""The in-memory Cloudinary account behind the fake server: signature check, assets, answers."""

from __future__ import annotations

import hashlib
import io
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import imageio_ffmpeg
from PIL import Image

# Cloudinary signs every Upload API parameter except these.
UNSIGNED_FIELDS = {"file", "api_key", "signature", "resource_type", "cloud_name"}
IMAGE_FORMATS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}


@dataclass(frozen=True)
class Asset:
    """One stored file, as Cloudinary would describe it."""

    public_id: str
    resource_type: str
    format: str
    data: bytes
    version: int
    created_at: str
    meta: dict[str, Any]


def error_body(message: str) -> dict[str, Any]:
    """Cloudinary's JSON error answer."""
    return {"error": {"message": message}}


class FakeAccount:
    """One cloud's credentials and stored files; its delivery URLs start at `delivery_base`."""

    def __init__(self, cloud_name: str, api_key: str, api_secret: str, delivery_base: str) -> None:
        self.cloud_name, self.api_key, self.api_secret = cloud_name, api_key, api_secret
        self.delivery_base = delivery_base
        self.assets: dict[tuple[str, str], Asset] = {}
        self._lock = threading.Lock()

    def signature_of(self, fields: dict[str, str]) -> str:
        """Cloudinary's request signature: SHA-1 of the sorted `k=v&...` plus the secret."""
        pairs = sorted(
            f"{k}={v}".replace("&", "%26")
            for k, v in fields.items()
            if k not in UNSIGNED_FIELDS and v != ""
        )
        return hashlib.sha1(("&".join(pairs) + self.api_secret).encode()).hexdigest()

    def upload(
        self, resource_type: str, fields: dict[str, str], data: bytes, filename: str
    ) -> tuple[int, dict[str, Any]]:
        """Check and store an upload; (status, JSON answer) as Cloudinary gives them."""
        if fields.get("api_key") != self.api_key:
            return 401, error_body(f"Invalid api_key {fields.get('api_key')}")
        if fields.get("signature") != self.signature_of(fields):
            return 401, error_body("Invalid Signature. String to sign - ...")
        if abs(time.time() - int(fields.get("timestamp") or 0)) > 3600:
            return 401, error_body("Stale request - reported time is more than 1 hour ago")
        try:
            fmt, meta = sniff(resource_type, data)
        except ValueError as exc:
            return 400, error_body(str(exc))
        public_id = fields.get("public_id") or hashlib.md5(data).hexdigest()[:20]
        overwrite = fields.get("overwrite", "1") in ("1", "true")
        with self._lock:
            old = self.assets.get((resource_type, public_id))
            if old is not None and not overwrite:
                return 200, {**self.describe(old), "existing": True}
            # A replaced file gets a newer version, so its URL changes and caches miss.
            version = max(int(time.time()), old.version + 1 if old else 0)
            created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            asset = Asset(public_id, resource_type, fmt, data, version, created, meta)
            self.assets[(resource_type, public_id)] = asset
        answer = self.describe(asset)
        answer["original_filename"] = filename.rsplit(".", 1)[0]
        if fields.get("asset_folder"):
            answer["asset_folder"] = fields["asset_folder"]
            answer["display_name"] = public_id.rsplit("/", 1)[-1]
        if old is not None:
            answer["overwritten"] = True
        return 200, answer

    def find(self, resource_type: str, public_id: str) -> Asset | None:
        """The stored file with this id, if any."""
        with self._lock:
            return self.assets.get((resource_type, public_id))

    def delete(self, resource_type: str, public_id: str) -> None:
        """Remove a stored file, as if deleted in the console."""
        with self._lock:
            del self.assets[(resource_type, public_id)]

    def describe(self, asset: Asset) -> dict[str, Any]:
        """The documented upload answer for a stored file."""
        url = (
            f"{self.delivery_base}/{self.cloud_name}/{asset.resource_type}/upload/"
            f"v{asset.version}/{asset.public_id}.{asset.format}"
        )
        to_sign = f"public_id={asset.public_id}&version={asset.version}{self.api_secret}"
        asset_key = f"{asset.resource_type}/{asset.public_id}"
        return {
            "asset_id": hashlib.md5(asset_key.encode()).hexdigest(),
            "public_id": asset.public_id,
            "version": asset.version,
            "signature": hashlib.sha1(to_sign.encode()).hexdigest(),
            "format": asset.format,
            "resource_type": asset.resource_type,
            "created_at": asset.created_at,
            "tags": [],
            "bytes": len(asset.data),
            "type": "upload",
            "etag": hashlib.md5(asset.data).hexdigest(),
            "placeholder": False,
            # No TLS on loopback: secure_url is the same plain-HTTP address.
            "url": url,
            "secure_url": url,
            **asset.meta,
        }


def sniff(resource_type: str, data: bytes) -> tuple[str, dict[str, Any]]:
    """(format, width/height/duration) of an upload; ValueError worded as Cloudinary does."""
    if resource_type == "video":
        if data[4:8] != b"ftyp":
            raise ValueError("Unsupported video format or file")
        with tempfile.NamedTemporaryFile(suffix=".mp4") as tmp:
            tmp.write(data)
            tmp.flush()
            reader = imageio_ffmpeg.read_frames(tmp.name)
            info = next(reader)
            reader.close()
        width, height = info["size"]
        return "mp4", {"width": width, "height": height, "duration": info["duration"]}
    try:
        with Image.open(io.BytesIO(data)) as image:
            fmt = IMAGE_FORMATS[image.format or ""]
            width, height = image.size
    except Exception:
        raise ValueError("Invalid image file") from None
    return fmt, {"width": width, "height": height}
