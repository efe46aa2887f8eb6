"""A failed step keeps the earlier checkpoints; a resume runs only the failed step onwards.

Runs on SQLite and on PostgreSQL (through dagster-postgres) via the `instance` fixture.
"""

from __future__ import annotations

import dagster as dg

from tests.conftest import SAMPLE_IMAGE, run_job
from wf_assets.asset_keys import asset_key_for
from wf_assets.factory import build_workflow_assets
from wf_assets.resume import completed_steps, ensure_partition
from wf_core.job_ids import new_job_id
from wf_core.job_state import steps_to_run
from wf_core.run_config import build_run_config


def _failure_metadata(instance: dg.DagsterInstance, run_id: str) -> dict:
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        data = record.dagster_event.step_failure_data
        return {k: v.value for k, v in data.user_failure_data.metadata.items()}
    raise AssertionError("no step failure recorded")


def test_resume_runs_only_the_failed_step(specs, bench, instance) -> None:
    spec = specs["img-edit-to-video"]
    job_id = new_job_id()
    assets = build_workflow_assets(spec)
    ensure_partition(instance, job_id)
    bench.set_faults({"image_to_video": {"error_type": "quota_exceeded", "retry_after": 30}})

    first = dg.materialize(
        assets,
        instance=instance,
        partition_key=job_id,
        resources=bench.resources(),
        run_config=build_run_config(spec, None, str(SAMPLE_IMAGE)),
        raise_on_error=False,
    )
    assert not first.success
    assert completed_steps(instance, spec, job_id) == {"upload", "image_edit"}
    run = instance.get_run_by_id(first.run_id)
    assert run.tags["wf/error_type"] == "quota_exceeded"
    assert run.tags["wf/retryable"] == "true"
    assert run.tags["wf/failed_step"] == "video_generation"
    assert "wf/retry_at" in run.tags
    failure = _failure_metadata(instance, first.run_id)
    assert failure["error_type"] == "quota_exceeded"
    assert failure["retryable"] is True
    assert failure["step"] == "video_generation" and failure["step_index"] == 2
    assert failure["retry_after"] == 30
    edit_checkpoint = bench.resources()["checkpoint_io"].read(
        asset_key_for(spec, "image_edit"), job_id
    )
    assert edit_checkpoint is not None
    assert [c["task"] for c in bench.calls()] == ["image_edit", "image_to_video"]

    bench.set_faults({})
    remaining = steps_to_run(spec, completed_steps(instance, spec, job_id))
    assert remaining == ["video_generation"]
    assert spec.step_index(remaining[0]) == 2
    second = dg.materialize(
        assets,
        instance=instance,
        partition_key=job_id,
        resources=bench.resources(),
        selection=[asset_key_for(spec, name) for name in remaining],
        run_config=build_run_config(spec, None, str(SAMPLE_IMAGE), steps=set(remaining)),
    )
    assert second.success
    calls = bench.calls()
    # Steps 1-2 were not called again; step 3 ran once more, on step 2's output.
    assert [c["task"] for c in calls] == ["image_edit", "image_to_video", "image_to_video"]
    assert calls[-1]["source"] == edit_checkpoint["output"]["public_id"]
    assert completed_steps(instance, spec, job_id) == {"upload", "image_edit", "video_generation"}
    started = [
        r.dagster_event.step_key
        for r in instance.all_logs(second.run_id, of_type=dg.DagsterEventType.STEP_START)
    ]
    assert started == [spec.op_name("video_generation")]
    # Only one materialization each for steps 1 and 2: they were never re-run.
    for step in ("upload", "image_edit"):
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=asset_key_for(spec, step), asset_partitions=[job_id]),
            limit=10,
        ).records
        assert len(records) == 1


def test_unknown_exception_is_recorded_as_internal(specs, bench, instance) -> None:
    spec = specs["img-edit-to-video"]
    bench.fault_file.write_text("{not json")
    result = run_job(spec, instance, bench.resources())
    assert not result.success
    failure = _failure_metadata(instance, result.run_id)
    assert failure["error_type"] == "internal" and failure["retryable"] is False
    assert "JSONDecodeError" in failure["message"]
