"""The job read model's projection (wf_core.job_record), pure: the folds, their order
rules, the stored form, and the columns a record projects to."""

from __future__ import annotations

import pytest

from wf_core import tags as t
from wf_core.job_ids import new_job_id
from wf_core.job_record import JobRecord, RunEntry, project
from wf_core.retry_policy import RetrySettings
from wf_core.specs import WorkflowSpec, load_specs

WORKFLOW = "img-edit-to-video"
SETTINGS = RetrySettings()


@pytest.fixture(scope="module")
def spec() -> WorkflowSpec:
    return load_specs()[WORKFLOW]


def _run(job_id: str, run_id: str, status: str, at: float, **extra: str) -> RunEntry:
    tags = {**t.job_tags(WORKFLOW, job_id, "u1", "bridge"), **extra}
    return RunEntry(run_id, status, tags, at, start=at + 1, end=at + 2, updated=at + 2)


def _checkpoint(spec: WorkflowSpec, job_id: str, step: str, run_id: str) -> dict:
    index = spec.step_index(step)
    return {
        "workflow_id": spec.id,
        "job_id": job_id,
        "step_name": step,
        "step_index": index,
        "step_type": spec.steps[index].type,
        "kind": spec.steps[index].kind,
        "output": {"url": f"http://x/{step}"},
        "run_id": run_id,
        "started_at": "2026-12-08T00:00:00.000+00:00",
        "completed_at": "2026-12-08T00:00:01.000+00:00",
    }


def _completed(spec: WorkflowSpec, job_id: str) -> JobRecord:
    record = JobRecord(job_id).with_run(_run(job_id, "r1", "SUCCESS", 100.0))
    for n, step in enumerate(spec.steps):
        raw = _checkpoint(spec, job_id, step.name, "r1")
        record = record.with_checkpoint((spec.id, step.name), 101.0 + n, "r1", raw)
    return record


def test_a_record_round_trips_through_its_stored_form(spec) -> None:
    job_id = new_job_id()
    record = _completed(spec, job_id).with_cancel_mark((spec.id, spec.steps[0].name))
    record = record.with_prediction(
        {"id": "a1", "step": "image_edit", "state": "parked", "provider": "replicate",
         "prediction_id": "p1", "provider_status": "processing", "progress": 40,
         "created_at": 1.0, "updated_at": 2.0, "output": "ignored"}
    )  # fmt: skip
    again = JobRecord.from_json(job_id, record.to_json())
    assert again == record
    assert "output" not in again.predictions["image_edit"]
    assert JobRecord.from_json(job_id, None) == JobRecord(job_id)


def test_the_folds_commute_where_writers_race(spec) -> None:
    """Two writers fold what each read, in either order: the row ends the same."""
    job_id = new_job_id()
    older = _run(job_id, "r1", "STARTED", 100.0)
    newer = RunEntry("r1", "SUCCESS", older.tags, 100.0, 101.0, 103.0, 103.0)
    one = JobRecord(job_id).with_run(older).with_run(newer)
    other = JobRecord(job_id).with_run(newer).with_run(older)
    assert one == other and one.runs["r1"].status == "SUCCESS"
    early = _checkpoint(spec, job_id, "upload", "r1")
    late = {**early, "output": {"url": "http://x/again"}}
    key = (spec.id, "upload")
    a = JobRecord(job_id).with_run(older).with_checkpoint(key, 1.0, "r1", early)
    b = JobRecord(job_id).with_run(older).with_checkpoint(key, 2.0, "r1", late)
    assert a.with_checkpoint(key, 2.0, "r1", late) == b.with_checkpoint(key, 1.0, "r1", early)


def test_the_newest_prediction_of_a_step_is_kept(spec) -> None:
    job_id = new_job_id()
    first = {"id": "a1", "step": "image_edit", "state": "abandoned", "provider": "replicate",
             "prediction_id": "p1", "provider_status": "failed", "progress": None,
             "created_at": 1.0, "updated_at": 5.0}  # fmt: skip
    second = {**first, "id": "a2", "state": "parked", "provider_status": "starting",
              "created_at": 3.0, "updated_at": 3.0}  # fmt: skip
    record = JobRecord(job_id).with_prediction(second).with_prediction(first)
    assert record.predictions["image_edit"]["id"] == "a2"


def test_a_completed_job_projects_its_columns(spec) -> None:
    job_id = new_job_id()
    columns = project(_completed(spec, job_id), spec, SETTINGS)
    assert columns["status"] == "completed" and columns["user_id"] == "u1"
    assert columns["workflow_id"] == WORKFLOW and columns["run_id"] == "r1"
    assert columns["first_run_id"] == "r1" and columns["attempt"] == 1
    assert columns["created_at"] == 100.0 and columns["updated_at"] == 102.0
    assert columns["current_step"] == spec.steps[-1].name
    assert columns["error_type"] is None and columns["retry_at"] is None


def test_a_checkpoint_of_a_run_not_of_the_job_does_not_count(spec) -> None:
    job_id = new_job_id()
    record = JobRecord(job_id).with_run(_run(job_id, "r1", "FAILURE", 100.0))
    raw = _checkpoint(spec, job_id, "upload", "elsewhere")
    record = record.with_checkpoint((spec.id, "upload"), 1.0, "elsewhere", raw)
    assert record.step_checkpoints(spec) == {}


def test_a_retryable_failure_is_pending_retry_with_its_time(spec) -> None:
    job_id = new_job_id()
    failure = {
        t.ERROR_TYPE: "timeout",
        t.RETRYABLE: "true",
        t.FAILED_STEP: "image_edit",
        t.FAILED_AT: "2026-12-08T00:00:00.000+00:00",
        t.ERROR_MESSAGE: "the provider timed out",
    }
    record = JobRecord(job_id).with_run(_run(job_id, "r1", "FAILURE", 100.0, **failure))
    record = record.with_checkpoint(
        (spec.id, "upload"), 101.0, "r1", _checkpoint(spec, job_id, "upload", "r1")
    )
    columns = project(record, spec, SETTINGS)
    assert columns["status"] == "pending_retry"
    assert columns["failed_step"] == "image_edit" and columns["error_type"] == "timeout"
    assert columns["error_message"] == "the provider timed out"
    assert columns["retry_at"] is not None and columns["current_step"] == "image_edit"


def test_the_cancel_mark_cancels(spec) -> None:
    job_id = new_job_id()
    record = JobRecord(job_id).with_run(_run(job_id, "r1", "SUCCESS", 100.0))
    record = record.with_run(_run(job_id, "r1", "SUCCESS", 100.0, **{t.PARKED_STEP: "image_edit"}))
    assert project(record, spec, SETTINGS)["status"] == "running"
    marked = record.with_cancel_mark((spec.id, spec.steps[0].name))
    assert project(marked, spec, SETTINGS)["status"] == "cancelled"
    # A mark on another asset is not this workflow's cancel mark.
    assert project(record.with_cancel_mark(("other", "x")), spec, SETTINGS)["status"] == "running"


def test_a_parked_step_shows_its_provider_status(spec) -> None:
    job_id = new_job_id()
    run = _run(job_id, "r1", "SUCCESS", 100.0, **{t.PARKED_STEP: "image_edit"})
    record = (
        JobRecord(job_id)
        .with_run(run)
        .with_checkpoint(
            (spec.id, "upload"), 101.0, "r1", _checkpoint(spec, job_id, "upload", "r1")
        )
    )
    row = {"id": "a1", "step": "image_edit", "state": "parked", "provider": "replicate",
           "prediction_id": "p1", "provider_status": "processing", "progress": 40,
           "created_at": 101.5, "updated_at": 150.0}  # fmt: skip
    columns = project(record.with_prediction(row), spec, SETTINGS)
    assert columns["status"] == "running" and columns["current_step"] == "image_edit"
    assert columns["provider_status"] == "processing" and columns["updated_at"] == 150.0
    done = project(record.with_prediction({**row, "state": "completed"}), spec, SETTINGS)
    assert done["provider_status"] is None and done["updated_at"] == 102.0


def test_without_its_spec_a_job_is_pending_with_what_its_runs_say() -> None:
    job_id = new_job_id()
    record = JobRecord(job_id).with_run(_run(job_id, "r1", "STARTED", 100.0))
    columns = project(record, None, SETTINGS)
    assert columns["status"] == "pending" and columns["workflow_id"] == WORKFLOW
    assert columns["record"] == record.to_json()
