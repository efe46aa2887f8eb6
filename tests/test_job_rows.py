"""The read model's rows and the prediction store's own writes: each transition of a
prediction folds into its job's row in the same transaction, and the row's columns
follow (provider status, update time, version)."""

from __future__ import annotations

import pytest

from tests.conftest import migrated
from wf_core import tags as t
from wf_core.job_ids import new_job_id
from wf_core.job_record import RunEntry
from wf_core.specs import load_specs
from wf_store.job_rows import JobFilter, JobRows, stored_specs
from wf_store.predictions import PredictionStore

WORKFLOW = "img-edit-to-video"
NOW = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path) -> PredictionStore:
    return PredictionStore(migrated(f"sqlite:///{tmp_path / 'state.db'}"), clock=Clock())


def _parked_job(rows: JobRows) -> str:
    """A job whose first run ended with its edit step parked at the provider."""
    spec = load_specs()[WORKFLOW]
    job_id = new_job_id(NOW)
    tags = {**t.job_tags(spec.id, job_id, "u1", "bridge"), t.PARKED_STEP: "image_edit"}
    run = RunEntry("r1", "SUCCESS", tags, NOW, NOW + 1, NOW + 2, NOW + 2)
    raw = {
        "workflow_id": spec.id, "job_id": job_id, "step_name": "upload", "step_index": 0,
        "step_type": spec.steps[0].type, "kind": spec.steps[0].kind, "output": {},
        "run_id": "r1", "started_at": "x", "completed_at": "y",
    }  # fmt: skip
    rows.apply(job_id, lambda r: r.with_run(run).with_checkpoint((spec.id, "upload"), 1, "r1", raw))
    return job_id


def _intend(store: PredictionStore, job_id: str):
    return store.intend(
        job_id=job_id, step="image_edit", attempt=1, workflow_id=WORKFLOW,
        provider="replicate", model="nano-banana", provider_model="google/nano-banana",
        input_digest="d", provider_input={"prompt": "p"}, run_id="r1",
    )  # fmt: skip


def test_a_predictions_transitions_move_its_jobs_row(store: PredictionStore) -> None:
    rows = JobRows(store.engine, stored_specs(store.engine))
    job_id = _parked_job(rows)
    assert rows.get(job_id).status == "running"
    assert rows.get(job_id).provider_status is None
    intent = _intend(store, job_id)
    assert rows.get(job_id).provider_status == "starting"
    store.clock.now = NOW + 5
    store.created(intent.id, "p1", "processing", next_poll_at=NOW + 60)
    store.clock.now = NOW + 9
    store.polled(intent.id, "processing", 40, next_poll_at=NOW + 60)
    row = rows.get(job_id)
    assert row.provider_status == "processing" and row.updated_at == NOW + 9
    assert row.job_record().predictions["image_edit"]["progress"] == 40
    version = row.version
    store.apply_provider_update({"id": "p1", "status": "succeeded"}, "webhook")
    row = rows.get(job_id)
    assert row.version == version + 1 and row.provider_status is None
    assert row.job_record().predictions["image_edit"]["state"] == "completed"


def test_a_prediction_never_makes_a_row(store: PredictionStore) -> None:
    rows = JobRows(store.engine)
    job_id = new_job_id(NOW)
    _intend(store, job_id)
    assert rows.get(job_id) is None


def test_filters_and_pages_read_the_rows(store: PredictionStore) -> None:
    rows = JobRows(store.engine, stored_specs(store.engine))
    jobs = [_parked_job(rows) for _ in range(3)]
    found = rows.find(JobFilter(status="running", user_id="u1"), limit=2)
    assert [r.job_id for r in found] == sorted(jobs, reverse=True)[:2]
    after = (found[-1].created_at, found[-1].job_id)
    assert [r.job_id for r in rows.find(JobFilter(), 5, after)] == sorted(jobs)[:1]
    assert rows.find(JobFilter(status="failed")) == []
