"""`input_upload`: take the job's input image into media storage as the first checkpoint.

The bridge's raw upload is deleted once its copy is stored; a receipt of the stored copy
replaces it, so that a rerun of the step reuses that copy instead of failing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from resources.json_files import write_json_atomic
from resources.media_storage import StoredMedia, media_public_id
from wf_assets.kinds.base import StepContext
from wf_assets.kinds.generate import Finished
from wf_core import settings
from wf_core.errors import HardError, PermanentErrorType
from wf_core.media_checks import ImageRejected, check_image
from wf_store.state_db import open_state_db
from wf_store.uploads import UploadStore, is_upload_source

# The step's error_type for each reason the core check refuses an image.
REFUSALS: dict[str, PermanentErrorType] = {
    "unsupported": "unsupported_type",
    "invalid": "invalid_input",
    "too_large": "file_too_large",
}
# The bridge stores a job's upload as <UPLOAD_DIR>/<job_id>/input.<fmt> (bridge_api/jobs/start.py).
UPLOAD_STEM = "input"
RECEIPT_NAME = "stored.json"


def read_source(source: str) -> bytes:
    """The bytes of the job's input: a local path, a file:// URL, an http(s) URL, or an
    upload the bridge kept in the engine's database (`wf-upload:`, any host reads it)."""
    if is_upload_source(source):
        data = UploadStore(open_state_db(settings.state_db_url())).get(source)
        if data is None:
            raise HardError("invalid_input", f"input file not found: {source}")
        return data
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
    try:
        image = check_image(data)
    except ImageRejected as exc:
        raise HardError(REFUSALS[exc.reason], exc.message) from None
    return image.format, image.width, image.height


def job_upload(source: str, job_id: str) -> Path | None:
    """The local file of `source` if it is the bridge's upload for this job, else None."""
    parsed = urlparse(source)
    if parsed.scheme not in ("", "file"):
        return None
    path = Path(parsed.path if parsed.scheme == "file" else source)
    return path if path.parent.name == job_id and path.stem == UPLOAD_STEM else None


def run_upload(ctx: StepContext) -> Finished:
    """The upload step as a kind: its output, no prediction."""
    return Finished(store_upload(ctx), None)


def store_upload(ctx: StepContext) -> dict[str, Any]:
    """Validate the job's input image, store it as `jobs/<job>/upload`, drop the raw upload."""
    if not ctx.source_path:
        raise HardError("invalid_input", "no input file was given for the upload step")
    upload = job_upload(ctx.source_path, ctx.job_id)
    if upload is not None and not upload.exists():
        earlier = _stored_earlier(ctx, upload.parent / RECEIPT_NAME)
        if earlier is not None:
            ctx.progress(100, "Input already stored")
            return earlier
    data = read_source(ctx.source_path)
    fmt, width, height = sniff_image(data)
    stored = ctx.media.put(media_public_id(ctx.job_id, ctx.step), data, fmt, "image")
    output = {
        "image_url": stored.url,
        "public_id": stored.public_id,
        "format": stored.format,
        "resource_type": "image",
        "bytes": stored.bytes,
        "width": width,
        "height": height,
    }
    if upload is not None:
        # Receipt first: a crash in between leaves the upload, and the step just runs again.
        write_json_atomic(upload.parent / RECEIPT_NAME, output)
        upload.unlink(missing_ok=True)
    ctx.progress(100, "Input stored")
    return output


def _stored_earlier(ctx: StepContext, receipt: Path) -> dict[str, Any] | None:
    """The output of an earlier run of this step, if its stored copy is still there."""
    try:
        output = json.loads(receipt.read_text())
        stored = StoredMedia(
            url=output["image_url"],
            public_id=output["public_id"],
            format=output["format"],
            resource_type="image",
            bytes=output["bytes"],
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return output if ctx.media.exists(stored) else None
