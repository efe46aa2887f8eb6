"""Dagster's side of the job read model (`wf_jobs`): every writer keeps the rows current.

The webserver, the daemon, the code server and every run worker load the instance from
the dagster.yaml that runtime/instance.py writes, which names `ProjectingInstance` as the
instance class: after each write that changes what a job's document shows (a run
created, a run status event, new run tags, a step's materialization with a checkpoint,
the cancel-mark observation) it folds that record into the job's row
(wf_core.job_record; wf_store.job_rows): one read of the run record for run changes,
then two statements on the state database (the NOTIFY comes from the table's trigger).

Dagster commits its write on its own connection first, so this is not one transaction:
a process killed between the two leaves the row behind the event log. That gap heals
itself: the owner check (sensors/owners.py) rebuilds from the event log the row of every
job it finds without an owner or final, and `python -m runtime.rebuild_read_model`
rebuilds any or all rows with the same folds (`record_from_instance`). A failure to
project is logged and never fails Dagster's own write.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg

from runtime.dagster_private import InstanceRef
from wf_core import settings
from wf_core import tags as t
from wf_core.job_record import JobRecord, RunEntry
from wf_core.tags import is_cancel_mark
from wf_store.job_rows import JobRows, default_settings, stored_specs
from wf_store.predictions import PredictionStore
from wf_store.state_db import open_state_db

log = logging.getLogger(__name__)
CHECKPOINT_LABEL = "checkpoint"
_rows: dict[tuple[int, str], JobRows] = {}


def run_entry(record: dg.RunRecord) -> RunEntry:
    """A run as dagster-webserver shows it (status, tags, creation, start, end, update)."""
    run = record.dagster_run
    return RunEntry(
        run_id=run.run_id,
        status=run.status.value,
        tags=dict(run.tags),
        created_at=record.create_timestamp.timestamp(),
        start=record.start_time,
        end=record.end_time,
        updated=record.update_timestamp.timestamp(),
    )


def checkpoint_of(entry: dg.EventLogEntry) -> tuple[str, tuple[str, ...], dict] | None:
    """(job id, asset path, checkpoint dict) of a step's materialization that carries one."""
    materialization = entry.asset_materialization
    if materialization is None or not materialization.partition:
        return None
    value = materialization.metadata.get(CHECKPOINT_LABEL)
    raw = getattr(value, "value", None)
    if isinstance(raw, str):
        raw = json.loads(raw)
    if not isinstance(raw, Mapping):
        return None
    return materialization.partition, tuple(materialization.asset_key.path), dict(raw)


def cancel_mark_of(entry: dg.EventLogEntry) -> tuple[str, tuple[str, ...]] | None:
    """(job id, asset path) of an observation that is a job's cancel mark."""
    observation = entry.asset_observation
    if observation is None or not observation.partition:
        return None
    if not is_cancel_mark(observation.description):
        return None
    return observation.partition, tuple(observation.asset_key.path)


def job_rows_for(instance: dg.DagsterInstance) -> JobRows:
    """The read model on the state database of this instance (one per process and URL)."""
    url = settings.state_db_url(_home(instance))
    key = (os.getpid(), url)  # a forked run worker opens its own connections
    rows = _rows.get(key)
    if rows is None:
        engine = open_state_db(url)
        rows = _rows[key] = JobRows(engine, stored_specs(engine), default_settings())
    return rows


def _home(instance: dg.DagsterInstance) -> Path | None:
    try:
        return Path(instance.root_directory)
    except Exception:
        return None


def project_run(instance: dg.DagsterInstance, rows: JobRows, run_id: str) -> None:
    """Fold the run's current record into its job's row (a run without a job id is not
    one of ours)."""
    records = instance.get_run_records(dg.RunsFilter(run_ids=[run_id]), limit=1)
    if not records:
        return
    entry = run_entry(records[0])
    job_id = entry.tags.get(t.JOB_ID)
    if job_id:
        rows.apply(job_id, lambda record: record.with_run(entry))


def project_event(instance: dg.DagsterInstance, rows: JobRows, entry: dg.EventLogEntry) -> None:
    """Fold one stored event into its job's row, when it is one the document shows."""
    event = entry.dagster_event
    if event is None:
        return
    if event.is_job_event and entry.run_id:
        project_run(instance, rows, entry.run_id)
        return
    if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
        found = checkpoint_of(entry)
        if found is not None:
            job_id, asset, raw = found
            stamp, run_id = entry.timestamp, entry.run_id
            rows.apply(job_id, lambda r: r.with_checkpoint(asset, stamp, run_id, raw))
    elif event.event_type == dg.DagsterEventType.ASSET_OBSERVATION:
        mark = cancel_mark_of(entry)
        if mark is not None:
            job_id, asset = mark
            rows.apply(job_id, lambda r: r.with_cancel_mark(asset))


class ProjectingInstance(dg.DagsterInstance):
    """A DagsterInstance that keeps the job read model current with its own writes."""

    @classmethod
    def config_schema(cls) -> dict[str, Any]:
        """No settings of its own in dagster.yaml (`instance_class.config`)."""
        return {}

    @staticmethod
    def config_defaults(base_dir: str) -> Any:
        """Dagster's own storage defaults (an `instance_class` must name them)."""
        return InstanceRef.config_defaults(base_dir)

    def create_run(self, **kwargs: Any) -> dg.DagsterRun:
        """Dagster's create_run, then the job's row."""
        run = super().create_run(**kwargs)
        self._project(lambda rows: project_run(self, rows, run.run_id))
        return run

    def add_run(self, dagster_run: dg.DagsterRun) -> dg.DagsterRun:
        """Dagster's add_run (a run made outside create_run), then the job's row."""
        run = super().add_run(dagster_run)
        self._project(lambda rows: project_run(self, rows, run.run_id))
        return run

    def add_run_tags(self, run_id: str, new_tags: Mapping[str, str]) -> None:
        """Dagster's add_run_tags, then the job's row (error type, retry state...)."""
        super().add_run_tags(run_id, new_tags)
        self._project(lambda rows: project_run(self, rows, run_id))

    def handle_new_event(self, event: dg.EventLogEntry, *, batch_metadata: Any = None) -> None:
        """Dagster's handle_new_event, then the job's row if the event is one it shows."""
        super().handle_new_event(event, batch_metadata=batch_metadata)
        if _relevant(event):
            self._project(lambda rows: project_event(self, rows, event))

    def _project(self, write: Any) -> None:
        try:
            write(job_rows_for(self))
        except Exception:  # the event log has it: the owner check or a rebuild heals
            log.exception("the job read model was not updated")


def _relevant(entry: dg.EventLogEntry) -> bool:
    event = entry.dagster_event
    if event is None:
        return False
    return event.is_job_event or event.event_type in (
        dg.DagsterEventType.ASSET_MATERIALIZATION,
        dg.DagsterEventType.ASSET_OBSERVATION,
    )


def record_from_instance(
    instance: dg.DagsterInstance, rows: JobRows, store: PredictionStore, job_id: str
) -> JobRecord:
    """The job's record rebuilt from the event log (runs, their checkpoint
    materializations, the cancel mark) and its prediction rows, with the live folds."""
    record = JobRecord(job_id)
    records = instance.get_run_records(dg.RunsFilter(tags={t.JOB_ID: job_id}))
    for run_record in sorted(records, key=lambda r: r.create_timestamp):
        record = record.with_run(run_entry(run_record))
        events = instance.get_records_for_run(
            run_record.dagster_run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
        ).records
        for event_record in events:
            entry = event_record.event_log_entry
            found = checkpoint_of(entry)
            if found is not None and found[0] == job_id:
                stamp, run_id = entry.timestamp, entry.run_id
                record = record.with_checkpoint(found[1], stamp, run_id, found[2])
    first = record.first_run()
    if first is not None:
        digest = first.tags.get(t.SPEC_VERSION)
        spec = rows.specs(job_id, first.tags.get(t.WORKFLOW, ""), digest)
        if spec is not None:
            key = dg.AssetKey([spec.id, spec.steps[0].name])
            observations = instance.fetch_observations(
                dg.AssetRecordsFilter(asset_key=key, asset_partitions=[job_id]), limit=1000
            ).records
            for observation in observations:
                mark = cancel_mark_of(observation.event_log_entry)
                if mark is not None:
                    record = record.with_cancel_mark(mark[1])
    for prediction in store.for_job(job_id):
        record = record.with_prediction(vars(prediction))
    return record


def rebuild_job(
    instance: dg.DagsterInstance, rows: JobRows, store: PredictionStore, job_id: str
) -> int | None:
    """Rewrite one job's row from the event log; its new version (None: the job has no
    runs, so no row)."""
    record = record_from_instance(instance, rows, store, job_id)
    if not record.runs:
        return None
    return rows.replace(record)


def heal(instance: dg.DagsterInstance, store: PredictionStore, job_ids: list[str]) -> int:
    """Rebuild these jobs' rows from the event log where they differ (the owner check's
    repair of a write that crashed between Dagster's commit and the row's); how many
    were rewritten. Never raises: the next visit tries again."""
    if not job_ids:
        return 0
    try:
        rows = job_rows_for(instance)
        before = rows.versions(job_ids)
    except Exception:
        log.exception("the job read model cannot be read; rows not checked")
        return 0
    healed = 0
    for job_id in job_ids:
        try:
            after = rebuild_job(instance, rows, store, job_id)
        except Exception:
            log.exception("job %s: its row was not rebuilt", job_id)
            continue
        healed += int(after is not None and after != before.get(job_id))
    return healed
