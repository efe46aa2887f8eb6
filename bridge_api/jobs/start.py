"""Starting a job: hold its credits, keep its input, pin its spec version, add its
partition and launch its first run; undo every one of them if a later one fails."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from flask import current_app

from bridge_api.dagster_client.errors import DagsterError
from bridge_api.http.errors import ApiError
from bridge_api.jobs.callbacks import forget_job, watch_job
from bridge_api.jobs.credits import reserve_for_job, settle_job
from bridge_api.jobs.lookup import catalog, gateway
from bridge_api.jobs.uploads import UploadedFile
from bridge_api.stores.predictions import prediction_store
from wf_core import tags as t
from wf_core.job_ids import new_job_id
from wf_core.run_config import build_run_config
from wf_core.specs import WorkflowSpec
from wf_store.spec_versions import SpecVersions
from wf_store.uploads import UploadStore, uploads_in_db


@dataclass(frozen=True)
class Started:
    """A job that was launched: its id, its first run and the spec version it runs on."""

    job_id: str
    run_id: str
    spec_version: str


def runnable_spec(workflow_id: str) -> WorkflowSpec:
    """The enabled workflow's spec (404 if none), once the orchestrator runs it (503)."""
    spec = catalog().get(workflow_id)
    if spec is None or not spec.enabled:
        raise ApiError(404, "workflow_not_found", f"No workflow {workflow_id!r}")
    if workflow_id not in catalog().runnable() and workflow_id not in catalog().runnable(True):
        # A file the orchestrator has not loaded yet (it reloads within seconds).
        raise ApiError(
            503,
            "workflow_loading",
            f"Workflow {workflow_id!r} is being loaded; try again shortly",
            headers={"Retry-After": "2"},
        )
    return spec


def start_job(
    spec: WorkflowSpec,
    options: dict,
    checked: UploadedFile,
    callback_url: str | None,
    user: str,
) -> Started:
    """Start a job of `spec` for `user` on a checked upload (402 when its credits are
    short: then nothing is held)."""
    job_id = new_job_id()
    reserve_for_job(spec, job_id)  # 402 here holds nothing
    try:
        watch_job(spec, job_id, callback_url)
        path = _store_input(job_id, checked.data, checked.format)
    except Exception:
        settle_job(job_id, (), "not_started")
        forget_job(job_id, callback_url)
        raise
    run_config = build_run_config(spec, options, str(path))
    versions = SpecVersions(prediction_store())
    try:
        # The job runs on this version of its spec, whatever happens to the file later.
        pin = versions.pin(job_id, spec, user, run_config)
        tags = {**t.job_tags(spec.id, job_id, user, "bridge")}
        tags[t.SPEC_VERSION] = pin.digest
        gateway().add_partition(job_id)
        try:
            # Launched, or known not to be: a lost answer is looked up (gateway.launch).
            run_id = gateway().launch(spec.job_name, run_config, tags)
        except Exception:
            _forget_partition(job_id)
            raise
    except Exception:
        _unpin(versions, job_id)
        if isinstance(path, str):
            UploadStore(prediction_store().engine).delete(job_id)
        else:
            shutil.rmtree(path.parent, ignore_errors=True)
        settle_job(job_id, (), "not_started")
        forget_job(job_id, callback_url)
        raise
    return Started(job_id, run_id, pin.digest)


def _store_input(job_id: str, data: bytes, fmt: str) -> Path | str:
    if uploads_in_db():  # run workers on other hosts: the database, not this disk
        return UploadStore(prediction_store().engine).put(job_id, data, fmt)
    folder = Path(current_app.config["UPLOAD_DIR"]) / job_id
    folder.mkdir(parents=True, exist_ok=False)
    path = folder / f"input.{fmt}"
    path.write_bytes(data)
    return path


def _unpin(versions: SpecVersions, job_id: str) -> None:
    try:
        versions.unpin(job_id)
    except Exception:  # the state database is down: the owner check closes the pin
        current_app.logger.warning("job %s: pin left behind", job_id)


def _forget_partition(job_id: str) -> None:
    try:
        gateway().delete_partition(job_id)
    except DagsterError:
        # Dagster is unreachable: a partition without runs is harmless (archive drops it).
        current_app.logger.warning("partition %s left behind: Dagster unreachable", job_id)
