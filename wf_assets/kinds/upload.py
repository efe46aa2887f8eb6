"""`input_upload`: take the job's input image into media storage as the first checkpoint."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from resources.media_storage import media_public_id
from wf_assets.errors import HardError
from wf_assets.kinds.base import StepContext

IMAGE_FORMATS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
MAX_PIXELS = 40_000_000


def read_source(source: str) -> bytes:
    """The bytes of the job's input: a local path, a file:// URL or an http(s) URL."""
    parsed = urlparse(source)
    if parsed.scheme in ("http", "https"):
        import httpx

        response = httpx.get(source, timeout=60, follow_redirects=True)
        if response.status_code >= 400:
            raise HardError("invalid_input", f"input file unreachable: HTTP {response.status_code}")
        return response.content
    path = Path(parsed.path if parsed.scheme == "file" else source)
    if not path.is_file():
        raise HardError("invalid_input", f"input file not found: {source}")
    return path.read_bytes()


def sniff_image(data: bytes) -> tuple[str, int, int]:
    """(format, width, height) of an image we accept; HardError for anything else."""
    from PIL import Image

    if not data:
        raise HardError("invalid_input", "the input file is empty")
    try:
        with Image.open(io.BytesIO(data)) as image:
            fmt = IMAGE_FORMATS.get(image.format or "")
            if fmt is None:
                raise HardError("unsupported_type", f"unsupported image type {image.format}")
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise HardError("file_too_large", f"image has {width * height} pixels")
            image.load()
    except HardError:
        raise
    except Image.DecompressionBombError as exc:
        raise HardError("file_too_large", f"image refused as a decompression bomb: {exc}") from None
    except Exception as exc:
        raise HardError("invalid_input", f"the input is not a decodable image: {exc}") from None
    return fmt, width, height


def run_upload(ctx: StepContext) -> dict[str, Any]:
    """Validate the job's input image and store it as `jobs/<job>/upload`."""
    if not ctx.source_path:
        raise HardError("invalid_input", "no input file was given for the upload step")
    data = read_source(ctx.source_path)
    fmt, width, height = sniff_image(data)
    stored = ctx.media.put(media_public_id(ctx.job_id, ctx.step), data, fmt, "image")
    ctx.progress(100, "Input stored")
    return {
        "image_url": stored.url,
        "public_id": stored.public_id,
        "format": stored.format,
        "resource_type": "image",
        "bytes": stored.bytes,
        "width": width,
        "height": height,
    }
