"""Generation kinds: ask the model provider for new media, then keep our own copy."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from resources.media_storage import ResourceType, media_public_id
from resources.model_provider import GenerationRequest
from resources.staged_outputs import StagedOutputs, staging_url
from wf_assets.kinds.base import StepContext
from wf_core.errors import HardError


def make_generation_run(
    task: str, url_field: str, resource_type: ResourceType, message: str
) -> Callable[[StepContext], dict[str, Any]]:
    """The function of a kind that sends its input media through one model."""

    def run(ctx: StepContext) -> dict[str, Any]:
        if not ctx.upstream:
            raise HardError("invalid_input", f"step {ctx.step!r} has no input media")
        if not ctx.model:
            raise HardError("model_not_found", f"step {ctx.step!r} has no model")
        ctx.progress(10, message)
        request = GenerationRequest(
            job_id=ctx.job_id,
            step=ctx.step,
            task=task,
            model=ctx.model,
            prompt=ctx.prompt,
            source=ctx.upstream[0].media(),
        )
        # A result paid for on an earlier attempt, whose storing failed, is not paid twice.
        staged = StagedOutputs(staging_url(ctx.media.staging_url))
        result = staged.take(request)
        if result is None:
            result = ctx.provider.generate(request, ctx.media, ctx.progress)
            staged.keep(request, result)
        else:
            ctx.progress(90, "Using the model output kept from an earlier attempt")
        # The provider's URL expires; the checkpoint must point at our copy.
        stored = ctx.media.put(
            media_public_id(ctx.job_id, ctx.step), result.data, result.format, resource_type
        )
        staged.drop(request)
        ctx.progress(100, "Output stored")
        return {
            url_field: stored.url,
            "public_id": stored.public_id,
            "format": stored.format,
            "resource_type": resource_type,
            "bytes": stored.bytes,
            "model_used": ctx.model,
            "prompt": ctx.prompt,
            "provider": result.provider,
            "provider_url": result.provider_url,
            "prediction_id": result.prediction_id,
            **result.extra,
        }

    return run
