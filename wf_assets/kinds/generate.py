"""Generation kinds: ask the model provider for new media, park while it works, then keep
our own copy.

A run never waits for a model. The first time a step runs it records the intent,
creates the prediction and parks (`Parked`): its run ends, holding nothing. When the
prediction has ended (webhook or poll), the hand-off sensor starts a continuation
run, in which the same step finds it completed and stores its output, or raises
its classified failure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dagster as dg

from resources.media_storage import ResourceType, media_public_id
from resources.model_provider import GenerationRequest, PreparedCall
from resources.rate_limiter import shared_rate_limiter
from resources.staged_outputs import StagedOutputs, staging_url
from wf_assets.kinds.base import StepContext
from wf_core import tags as t
from wf_core.errors import HardError, RetryableError, WorkflowError
from wf_core.polling import first_poll_at
from wf_store import predictions as p


@dataclass(frozen=True)
class Parked:
    """The step's prediction is running at the provider; the run ends without an output."""

    prediction: p.Prediction


@dataclass(frozen=True)
class Finished:
    """The step's output, and the prediction it consumed (marked once the checkpoint is in)."""

    output: dict[str, Any]
    intent_id: str | None


def make_generation_run(
    task: str, url_field: str, resource_type: ResourceType, message: str
) -> Callable[[StepContext], Finished | Parked]:
    """The function of a kind that sends its input media through one model."""

    def run(ctx: StepContext) -> Finished | Parked:
        if not ctx.upstream:
            raise HardError("invalid_input", f"step {ctx.step!r} has no input media")
        if not ctx.model:
            raise HardError("model_not_found", f"step {ctx.step!r} has no model")
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
        intent_id = None
        if result is None:
            row = _settled_prediction(ctx, request, message)
            if row.state not in (p.CONSUMING,):
                return Parked(row)
            intent_id = row.id
            if not row.succeeded:
                ctx.predictions.consumed(row.id)
                raise ctx.provider.failure(row)
            ctx.progress(90, "Storing the model's output")
            try:
                result = ctx.provider.collect(row, request, ctx.media)
            except RetryableError:
                # Its output is gone: the next attempt needs a new prediction.
                ctx.predictions.expired(row.id, "the output could not be fetched")
                raise
            staged.keep(request, result)
        else:
            ctx.progress(90, "Using the model output kept from an earlier attempt")
        # The provider's URL expires; the checkpoint must point at our copy.
        stored = ctx.media.put(
            media_public_id(ctx.job_id, ctx.step), result.data, result.format, resource_type
        )
        staged.drop(request)
        ctx.progress(100, "Output stored")
        output = {
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
        return Finished(output, intent_id)

    return run


def _settled_prediction(ctx: StepContext, request: GenerationRequest, message: str):
    """This step's prediction: claimed by this run if it has ended, else parked (created now
    if there was none)."""
    store, provider = ctx.predictions, ctx.provider
    call = provider.prepare(request, ctx.media)
    row = store.latest(ctx.job_id, ctx.step)
    if row is not None and row.state in p.LIVE and row.input_digest != call.digest:
        # It was asked for something else (another model or input): stop paying for it.
        if row.prediction_id and not row.terminal:
            provider.cancel(row)
        store.abandon(row.id, "the step's model or input changed")
        row = None
    if row is None or row.state not in p.LIVE:
        ctx.progress(10, message)
        row = _create(ctx, call, _intend(ctx, call, request))
    elif row.state == p.CREATING:
        # A crash came between the intent and the provider's answer: find before creating.
        intent_id = row.id
        found = provider.find(row, lambda pid: _owned_by_another(store, pid, intent_id))
        if found is None:
            # What is sent now (signed URLs change) is what a later search must match.
            row = _create(ctx, call, store.restate_input(row.id, call.provider_input) or row)
        else:
            row = _record_created(ctx, row, found)
    elif row.state == p.PARKED:
        # Run again while parked (a retry after a crash): it may have ended meanwhile.
        seen = provider.fetch(row)
        lost = {"id": row.prediction_id, "status": "aborted", "error": "the provider lost it"}
        store.apply_provider_update(seen.as_update() if seen else lost, "run")
        row = store.get(row.id) or row
    if row.state in (p.COMPLETED, p.HANDED_OFF, p.CONSUMING):
        _free_slot(ctx, row)  # no longer at the provider: its concurrency slot is free
        claimed = store.claim(row.id, ctx.run_id)
        if claimed is None:
            raise RetryableError(
                "server_unavailable", f"prediction {row.prediction_id} was taken over", None
            )
        return claimed
    ctx.progress(15, f"Waiting for {provider.provider_name} ({row.provider_status})")
    return row


def _owned_by_another(store: p.PredictionStore, prediction_id: str, intent_id: str) -> bool:
    owner = store.by_prediction_id(prediction_id)
    return owner is not None and owner.id != intent_id


def _intend(ctx: StepContext, call: PreparedCall, request: GenerationRequest) -> p.Prediction:
    return ctx.predictions.intend(
        job_id=ctx.job_id,
        step=ctx.step,
        attempt=ctx.attempt,
        workflow_id=ctx.workflow_id,
        provider=ctx.provider.provider_name,
        model=request.model,
        provider_model=call.provider_model,
        input_digest=call.digest,
        provider_input=call.provider_input,
        run_id=ctx.run_id,
    )


def _run_user() -> str:
    """The user whose job this run is (fair order in the provider limiter)."""
    try:
        return dg.AssetExecutionContext.get().run.tags.get(t.USER, "")
    except Exception:  # outside a Dagster step (a test calling the kind directly)
        return ""


def _wait_for_slot(ctx: StepContext, intent: p.Prediction) -> None:
    """Take this create's turn at the shared provider limiter (resources/rate_limiter.py):
    a burst queues here, fairly between users, instead of meeting the provider's 429s."""
    limiter = shared_rate_limiter()
    if limiter is None:
        return
    try:
        permit = limiter.acquire(ctx.provider.provider_name, intent.model, intent.id, _run_user())
    except RetryableError:
        # Nothing was sent: the intent can go; the retry makes a new one.
        ctx.predictions.abandon(intent.id, "no create slot at the provider limiter")
        raise
    if permit is not None and permit.waited >= 1:
        ctx.progress(12, f"Waited {permit.waited:.0f} s for a {ctx.provider.provider_name} slot")


def _free_slot(ctx: StepContext, row: p.Prediction) -> None:
    limiter = shared_rate_limiter()
    if limiter is not None:
        limiter.release(ctx.provider.provider_name, row.model, row.id)


def _create(ctx: StepContext, call: PreparedCall, intent: p.Prediction) -> p.Prediction:
    _wait_for_slot(ctx, intent)
    try:
        created = ctx.provider.submit(call, intent, ctx.webhook_url)
    except WorkflowError as exc:
        if not ctx.provider.create_may_have_arrived(exc):
            ctx.predictions.abandon(intent.id, f"create refused: {exc.error_type}")
            _free_slot(ctx, intent)
        raise
    except Exception as exc:
        ctx.predictions.abandon(intent.id, f"create refused: {type(exc).__name__}")
        _free_slot(ctx, intent)
        raise
    return _record_created(ctx, intent, created)


def _record_created(ctx: StepContext, intent: p.Prediction, created) -> p.Prediction:
    now = ctx.clock()
    webhooks = ctx.webhook_url is not None and ctx.provider.sends_webhooks
    return ctx.predictions.created(
        intent.id,
        created.id,
        created.status,
        first_poll_at(now, created.expected_at, webhooks, ctx.poll_settings),
        expected_at=created.expected_at,
        output=created.output,
        error=None if created.error is None else str(created.error),
    )
