"""Turn a workflow spec into Dagster assets (one per step) and one job.

No `from __future__ import annotations` here: Dagster reads the asset function's
annotations at definition time to find its config and resources.
"""

import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg

from resources.media_storage import MediaStorage
from resources.model_provider import ModelProvider
from resources.state_database import StateDatabase
from runtime.worker import worker_identity
from wf_assets.asset_keys import asset_key_for
from wf_assets.checkpoints import recorded_checkpoint
from wf_assets.dependencies import as_dependency_outage
from wf_assets.kinds import STEP_KINDS, StepContext, Upstream
from wf_assets.kinds.generate import Parked
from wf_assets.partitions import jobs_partitions
from wf_assets.step_guard import check_run_may_proceed
from wf_core import tags as t
from wf_core.checkpoint import Checkpoint
from wf_core.clock import Clock
from wf_core.errors import HardError, WorkflowError, classify
from wf_core.models import MODELS
from wf_core.progress import ProgressGate
from wf_core.specs import StepSpec, WorkflowSpec, continuation_problem
from wf_core.tags import failure_tags
from wf_core.times import now_iso
from wf_store.spec_versions import SpecVersions

CHECKPOINT_IO_KEY = "checkpoint_io"


class StepConfig(dg.Config):
    """Per-job choices for one step, sent as run config (API.md `options`)."""

    model: str | None = None
    prompt: str | None = None
    source: str | None = None


def _resolve_options(spec: WorkflowSpec, step: StepSpec, config: StepConfig) -> tuple:
    model = config.model or step.default_model
    supported = spec.supported_models.get(step.name, [])
    if config.model and config.model not in supported:
        raise HardError("invalid_input", f"model {config.model!r} is not supported by {step.name}")
    if model and model not in MODELS:
        raise HardError("spec_changed", f"model {model!r} of {step.name} is no longer available")
    prompt = config.prompt if config.prompt is not None else spec.default_prompts.get(step.name)
    return model, prompt


def pinned_spec(
    context: dg.AssetExecutionContext, versions: SpecVersions, current: WorkflowSpec, job_id: str
) -> WorkflowSpec:
    """The spec version the job runs on; a job without a pin is pinned to `current` now."""
    pinned = versions.spec_for_job(job_id)
    if pinned is not None:
        return pinned
    user = context.run.tags.get(t.USER, "unknown")
    pin = versions.pin(job_id, current, user, None)
    return versions.version(pin.digest) or current


def _step_of_version(
    context: dg.AssetExecutionContext, pinned: WorkflowSpec, current: WorkflowSpec, name: str
) -> StepSpec:
    """The step as the job's version declares it, if this code can still run it."""
    if context.run.tags.get(t.END_REASON):
        raise HardError("spec_changed", context.run.tags[t.END_REASON])
    problem = continuation_problem(pinned, current, [name])
    if problem:
        raise HardError("spec_changed", f"This job's workflow changed: {problem}")
    return pinned.step(name)


def build_step_asset(spec: WorkflowSpec, step: StepSpec) -> dg.AssetsDefinition:
    """One step as an asset partitioned by job id; its materialization is the checkpoint.

    The asset's shape (key, inputs) is the current spec's; what the step does (kind,
    model, prompt, fallbacks) is the version its job is pinned to.
    """
    index = spec.step_index(step.name)
    upstream_steps = spec.inputs_of(step)
    ins = {name: dg.AssetIn(key=asset_key_for(spec, name)) for name in upstream_steps}

    @dg.asset(
        key=asset_key_for(spec, step.name),
        ins=ins,
        partitions_def=jobs_partitions,
        group_name=spec.job_name,
        io_manager_key=CHECKPOINT_IO_KEY,
        description=step.description,
        kinds={"python", "video" if step.kind == "image_to_video" else "image"},
        metadata={"step_index": index, "step_type": step.type, "step_kind": step.kind},
        tags={"wf/step_type": step.type},
        # A step whose prediction is parked at the provider ends its run without an
        # output: the step and everything downstream wait for the continuation run.
        output_required=False,
    )
    def _step(
        context: dg.AssetExecutionContext,
        config: StepConfig,
        model_provider: ModelProvider,
        media_storage: MediaStorage,
        predictions: StateDatabase,
        **upstream: dict[str, Any],
    ) -> Iterator[dg.Output[dict[str, Any]]]:
        started_at = now_iso()
        job_id = context.partition_key
        if context.run.tags.get(t.WORKER) != worker_identity():
            # Lets the retry sensor tell a dead run worker from a slow one.
            context.instance.add_run_tags(context.run_id, {t.WORKER: worker_identity()})
        check_run_may_proceed(context.instance, spec, job_id, context.run_id, step.name)
        model = None
        try:
            job_spec = pinned_spec(context, SpecVersions(predictions.store()), spec, job_id)
            job_step = _step_of_version(context, job_spec, spec, step.name)
        except Exception as exc:
            raise _step_failure(context, spec, step, exc, started_at, (None, None)) from exc
        kind = STEP_KINDS[job_step.kind]
        earlier = _earlier_checkpoint(context, spec, step) if kind.needs_model else None
        if earlier is not None:
            # Two of our runs met at this step (a crashed run's retry and the continuation
            # of its prediction): the first stored it; the second must not pay again.
            context.log.info(f"{step.name} already has its checkpoint: reused, not run again")
            stored = earlier.to_dict()
            yield dg.Output(stored, metadata={"checkpoint": dg.MetadataValue.json(stored)})
            return
        try:
            model, prompt = _resolve_options(job_spec, job_step, config)
            ctx = StepContext(
                job_id=job_id,
                step=step.name,
                model=model if kind.needs_model else None,
                prompt=prompt,
                upstream=[
                    Upstream(
                        name, job_spec.step(name).kind, Checkpoint.from_dict(upstream[name]).output
                    )
                    for name in upstream_steps
                ],
                provider=model_provider,
                media=media_storage,
                store=predictions.store(),
                run_id=context.run_id,
                attempt=int(context.run.tags.get(t.ATTEMPT, "1") or 1),
                workflow_id=spec.id,
                webhook_url=predictions.webhook_url,
                poll_settings=predictions.poll_settings(),
                source_path=config.source,
                progress=_progress_logger(context),
            )
            outcome = kind.run(ctx)
        except Exception as exc:
            used = (model_provider.provider_name, model) if kind.needs_model else (None, None)
            raise _step_failure(context, spec, step, exc, started_at, used) from exc
        if isinstance(outcome, Parked):
            _park(context, spec, step, outcome)
            return
        checkpoint = completed_checkpoint(
            spec, step, job_step.kind, job_id, context.run_id, outcome.output, started_at
        )
        metadata = checkpoint_metadata(checkpoint, kind.url_field)
        yield dg.Output(checkpoint.to_dict(), metadata=metadata)
        # The checkpoint is written once the output is yielded: only now is the
        # prediction spent. (A crash before this leaves it `consuming`, which the
        # step never reads again: it has its checkpoint.)
        if outcome.intent_id:
            predictions.store().consumed(outcome.intent_id)

    return _step


def completed_checkpoint(
    spec: WorkflowSpec,
    step: StepSpec,
    kind: str,
    job_id: str,
    run_id: str,
    output: dict[str, Any],
    started_at: str,
    clock: Clock = time.time,
) -> Checkpoint:
    """The checkpoint of `step` (of the current `spec`) completing now; `kind` is the
    step kind that ran it (the job's pinned version's)."""
    return Checkpoint(
        workflow_id=spec.id,
        job_id=job_id,
        step_name=step.name,
        step_index=spec.step_index(step.name),
        step_type=step.type,
        kind=kind,
        output=output,
        run_id=run_id,
        started_at=started_at,
        completed_at=now_iso(clock),
    )


def checkpoint_metadata(checkpoint: Checkpoint, url_field: str) -> dict[str, Any]:
    """The step's materialization metadata: the stored checkpoint, its times, its media."""
    metadata: dict[str, Any] = {
        "checkpoint": dg.MetadataValue.json(checkpoint.to_dict()),
        "started_at": checkpoint.started_at,
        "completed_at": checkpoint.completed_at,
    }
    url = checkpoint.output.get(url_field)
    if url:
        metadata["media_url"] = dg.MetadataValue.url(url)
    if checkpoint.output.get("model_used"):
        metadata["model_used"] = checkpoint.output["model_used"]
    return metadata


def _progress_logger(context: dg.AssetExecutionContext) -> Callable[[int, str], None]:
    """Progress as log lines (the stream reads them), only when worth an event-log write."""
    gate = ProgressGate()

    def report(percent: int, message: str) -> None:
        if gate.admit(percent):
            context.log.info(f"progress {percent}% {message}")

    return report


def _earlier_checkpoint(
    context: dg.AssetExecutionContext, spec: WorkflowSpec, step: StepSpec
) -> Checkpoint | None:
    """The step's checkpoint for this job if one exists and this run is one of ours.

    Our launchers select only steps without a checkpoint; an operator's re-materialization
    (no attempt tag) is a deliberate re-run and is not stopped.
    """
    if t.ATTEMPT not in context.run.tags:
        return None
    return recorded_checkpoint(
        context.instance, asset_key_for(spec, step.name), context.partition_key
    )


def _park(
    context: dg.AssetExecutionContext, spec: WorkflowSpec, step: StepSpec, parked: Parked
) -> None:
    """End this step without an output; tag the run so the job reads as waiting on it."""
    row = parked.prediction
    context.instance.add_run_tags(
        context.run_id, {t.PARKED_STEP: step.name, t.PARKED_PREDICTION: row.id}
    )
    # For an operator in Dagster's UI: the asset's partition shows what it waits on.
    context.log_event(
        dg.AssetObservation(
            asset_key=asset_key_for(spec, step.name),
            partition=context.partition_key,
            description=f"Waiting on {row.provider} prediction {row.prediction_id}",
            metadata={
                "provider": row.provider,
                "prediction_id": row.prediction_id or "",
                "provider_status": row.provider_status or "",
                "model": row.model,
                "intent_id": row.id,
            },
        )
    )
    context.log.info(
        f"{step.name} parked: {row.provider} prediction {row.prediction_id} "
        f"({row.provider_status}); the run ends, the step continues when it completes"
    )


def _step_failure(
    context: dg.AssetExecutionContext,
    spec: WorkflowSpec,
    step: StepSpec,
    exc: Exception,
    started_at: str,
    used: tuple[str | None, str | None],
) -> dg.Failure:
    """Record why a step failed (run tags and failure metadata) and build the Failure."""
    if not isinstance(exc, WorkflowError):
        context.log.error(f"{step.name} raised {type(exc).__name__}: {exc}")  # the full text
        exc = as_dependency_outage(exc) or exc
    record = classify(exc, step.name, spec.step_index(step.name))
    provider, model = used
    record = replace(record, provider=record.provider or provider, model=record.model or model)
    failed_at = datetime.now(UTC)
    retry_at = None
    if record.retry_after is not None:
        retry_at = (failed_at + timedelta(seconds=record.retry_after)).isoformat()
    fields = {
        **record.as_dict(),
        "started_at": started_at,
        "failed_at": failed_at.isoformat(),
        "retry_at": retry_at,
    }
    fingerprint = None
    if record.error_type == "invalid_key":
        fingerprint = context.resources.model_provider.credential_fingerprint()
    tags = failure_tags(record, failed_at.isoformat(), retry_at, fingerprint)
    if isinstance(exc, WorkflowError) and exc.details.get("dependency"):
        tags[t.DEPENDENCY_OUTAGE] = "true"
    context.instance.add_run_tags(context.run_id, tags)
    context.log.error(f"{record.error_type} in {step.name}: {record.message}")
    metadata = {key: value for key, value in fields.items() if value is not None}
    return dg.Failure(description=record.message, metadata=metadata, allow_retries=False)


def build_workflow_assets(spec: WorkflowSpec) -> list[dg.AssetsDefinition]:
    """Every step of `spec` as an asset."""
    return [build_step_asset(spec, step) for step in spec.steps]


def build_workflow_job(spec: WorkflowSpec):  # an unresolved asset job (not exported)
    """The job that materializes a workflow's steps for one job id, in one process."""
    return dg.define_asset_job(
        name=spec.job_name,
        selection=dg.AssetSelection.groups(spec.job_name),
        partitions_def=jobs_partitions,
        executor_def=dg.in_process_executor,
        description=spec.description,
        tags={"wf/workflow": spec.id},
    )
