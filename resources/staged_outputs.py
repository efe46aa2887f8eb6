"""Staged outputs: a model's paid result, kept durably until media storage has taken it.

A provider call is paid for when it returns. If storing its output then fails (media
storage down, disk full), the retry must store the staged bytes instead of paying the
provider again. One entry per job step, tagged with a digest of what was asked, so a
rerun that asks something else never gets a stale result.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from typing import Any

import dagster as dg
from upath import UPath

from resources.json_files import write_json_atomic
from resources.model_provider import GeneratedMedia, GenerationRequest
from wf_core.config import EngineSettings
from wf_core.errors import RetryableError
from wf_core.settings import checkpoint_url


def staging_url(configured: str | None = None) -> str:
    """Where staged outputs live: `configured`, else STAGING_URL, else under the checkpoints."""
    config = EngineSettings.from_env()
    return configured or config.staging_url or f"{checkpoint_url(config).rstrip('/')}/_staged"


def request_digest(request: GenerationRequest) -> str:
    """A stable hash of what a step asked: task, model, prompt, params and source media."""
    asked = [request.task, request.model, request.prompt, request.params, request.source.as_dict()]
    text = json.dumps(asked, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class StagedOutputs:
    """`<root>/<job_id>/<step>.json`: the bytes (base64) and provenance of one result."""

    def __init__(self, root: str) -> None:
        self.root = root

    def path(self, job_id: str, step: str) -> UPath:
        """Where the staged output of one job step lives."""
        for part in (job_id, step):
            if not part or "/" in part or "\\" in part or part.startswith("."):
                raise ValueError(f"invalid staging key part {part!r}")
        return UPath(self.root).joinpath(job_id, f"{step}.json")

    def take(self, request: GenerationRequest) -> GeneratedMedia | None:
        """The result staged for this very request, or None (none, or one asked otherwise)."""
        path = self.path(request.job_id, request.step)
        try:
            if not path.exists():
                return None
            saved = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            # Calling the provider now could pay twice for a result that is kept there.
            dg.get_dagster_logger().warning(f"staged output {path} unreadable: {exc}")
            reason = os.strerror(exc.errno).lower() if exc.errno else type(exc).__name__
            message = f"The staging store could not be read ({reason})"
            raise RetryableError("server_unavailable", message) from None
        if saved.get("digest") != request_digest(request):
            return None
        return GeneratedMedia(
            data=base64.b64decode(saved["data"]),
            format=saved["format"],
            provider=saved["provider"],
            provider_url=saved.get("provider_url"),
            prediction_id=saved.get("prediction_id"),
            extra=saved.get("extra") or {},
        )

    def keep(self, request: GenerationRequest, result: GeneratedMedia) -> bool:
        """Stage a fresh result; False (logged) if the staging store refused it."""
        entry: dict[str, Any] = {
            "job_id": request.job_id,
            "step": request.step,
            "digest": request_digest(request),
            "format": result.format,
            "provider": result.provider,
            "provider_url": result.provider_url,
            "prediction_id": result.prediction_id,
            "extra": result.extra,
            "data": base64.b64encode(result.data).decode("ascii"),
        }
        path = self.path(request.job_id, request.step)
        try:
            write_json_atomic(path, entry)
        except OSError as exc:
            # Not fatal: media storage may well take the output right away.
            dg.get_dagster_logger().warning(f"could not stage output at {path}: {exc}")
            return False
        return True

    def drop(self, request: GenerationRequest) -> None:
        """Forget a step's staged result once media storage holds the output."""
        path = self.path(request.job_id, request.step)
        try:
            path.unlink(missing_ok=True)
            if path.protocol in ("", "file", "local") and not any(path.parent.iterdir()):
                path.parent.rmdir()  # one folder per job would pile up otherwise
        except OSError as exc:
            # A leftover is harmless: only a rerun asking the same thing would reuse it.
            dg.get_dagster_logger().warning(f"could not remove staged output {path}: {exc}")
