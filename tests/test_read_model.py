"""The job read model on a real instance (our dagster.yaml: SQLite and PostgreSQL): every
write of a run keeps the job's row current, and a rebuild from the event log equals it."""

from __future__ import annotations

import pytest

from runtime.read_model import heal, job_rows_for, record_from_instance
from runtime.rebuild_read_model import rebuild
from tests.conftest import Workbench, run_job
from wf_core.job_ids import new_job_id
from wf_core.tags import job_tags
from wf_store.job_rows import JobRow, JobRows
from wf_store.predictions import PredictionStore

WORKFLOW = "img-edit-to-video"


@pytest.fixture
def rows(instance, bench: Workbench, monkeypatch) -> JobRows:
    """The read model on the bench's state database (where its predictions are too)."""
    monkeypatch.setenv("WF_STATE_DB_URL", bench.state_db_url)
    return job_rows_for(instance)


def _start(instance, spec, bench: Workbench) -> str:
    job_id = new_job_id()
    tags = job_tags(spec.id, job_id, "user-1", "bridge")
    run_job(spec, instance, bench.resources(), job_id=job_id, tags=tags)
    return job_id


def _rebuilt(instance, rows: JobRows, bench: Workbench, job_id: str) -> dict:
    store = PredictionStore(bench.state_db_url)
    return rows.columns(record_from_instance(instance, rows, store, job_id))


def _served(row: JobRow | None) -> dict:
    assert row is not None
    return {k: v for k, v in vars(row).items() if k != "version"}


def test_every_write_keeps_the_row_and_a_rebuild_equals_it(instance, specs, bench, rows) -> None:
    spec = specs[WORKFLOW]
    bench.set_faults({"nano-banana": {"error_type": "content_rejected", "times": 1}})
    failed = _start(instance, spec, bench)
    done = _start(instance, spec, bench)
    assert rows.get(failed).status == "failed" and rows.get(done).status == "completed"
    assert rows.get(failed).error_type == "content_rejected"
    assert rows.get(failed).failed_step == "image_edit"
    for job_id in (failed, done):
        assert _rebuilt(instance, rows, bench, job_id) == _served(rows.get(job_id))
    # The command's own pass finds nothing to write.
    counts = rebuild(instance, rows, [failed, done])
    assert counts == {"jobs": 2, "written": 0, "unchanged": 2, "no_runs": 0}


def test_a_lost_row_is_healed_from_the_event_log(instance, specs, bench, rows) -> None:
    spec = specs[WORKFLOW]
    job_id = _start(instance, spec, bench)
    before = _served(rows.get(job_id))
    rows.delete(job_id)  # as if the writer died between Dagster's commit and the row's
    assert rows.get(job_id) is None
    assert heal(instance, PredictionStore(bench.state_db_url), [job_id]) == 1
    assert _served(rows.get(job_id)) == before
    assert heal(instance, PredictionStore(bench.state_db_url), [job_id]) == 0


def test_a_job_that_never_ran_has_no_row(instance, rows) -> None:
    job_id = new_job_id()
    counts = rebuild(instance, rows, [job_id])
    assert counts["no_runs"] == 1 and rows.get(job_id) is None
