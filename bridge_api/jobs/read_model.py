"""Jobs as the read model (`wf_jobs`) holds them: the snapshot and prediction rows that
the execution document is made of, from one row, with no GraphQL request.

A job without a row (started before the read model, not yet rebuilt) or a state database
that cannot be read gives None: single-job readers then fall back to Dagster's GraphQL.
"""

from __future__ import annotations

import logging
from dataclasses import fields
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from bridge_api.dagster_client.snapshots import JobSnapshot
from bridge_api.stores.predictions import prediction_store
from wf_core.checkpoint import Checkpoint
from wf_core.job_record import JobRecord
from wf_core.specs import WorkflowSpec
from wf_store.job_rows import JobRow, JobRows
from wf_store.predictions import Prediction

log = logging.getLogger(__name__)


def job_rows() -> JobRows:
    """The read model on the app's state database."""
    return JobRows(prediction_store().engine)


def read_row(job_id: str) -> JobRow | None:
    """The job's row, or None (no row, or the state database cannot be read)."""
    try:
        return job_rows().get(job_id)
    except (SQLAlchemyError, OSError) as exc:
        log.warning("job read model unreachable, reading Dagster instead: %s", exc)
        return None


def snapshot_of(record: JobRecord, spec: WorkflowSpec) -> JobSnapshot:
    """The snapshot GraphQL would give of the job (runs, checkpoints, cancel mark, times)."""
    checkpoints = {
        step: Checkpoint.from_dict(raw) for step, raw in record.step_checkpoints(spec).items()
    }
    runs = sorted(record.runs.values(), key=lambda r: (r.created_at, r.run_id), reverse=True)
    return JobSnapshot(
        record.job_id,
        [run.view() for run in runs],
        checkpoints,
        record.cancelled(spec),
        {run.run_id: run.times() for run in runs},
    )


_EMPTY: dict[str, Any] = {f.name: None for f in fields(Prediction)}


def predictions_of_record(record: JobRecord) -> list[Prediction]:
    """The newest prediction of each step (what the document's provider block reads),
    oldest first as the store lists them."""
    rows = []
    for stored in record.predictions.values():
        values = {**_EMPTY, "attempt": 0, "polls": 0, "job_id": record.job_id, **stored}
        rows.append(Prediction(**values))
    return sorted(rows, key=lambda row: (row.created_at, row.id))
