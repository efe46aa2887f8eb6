"""Media storage that cannot be written fails a step retryably, and a resume pays once.

The faults are real OS errors that hold for root too (tests run as root, where chmod
stops nothing): a directory where a file must go, or a regular file where a folder must.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from resources.local_media import LocalMediaStorage
from resources.media_storage import StoredMedia
from tests.conftest import SAMPLE_IMAGE, Workbench, run_job
from wf_assets.asset_keys import asset_key_for
from wf_assets.factory import build_workflow_assets
from wf_assets.resume import completed_steps, ensure_partition
from wf_core.errors import HardError, RetryableError
from wf_core.job_ids import new_job_id
from wf_core.job_state import steps_to_run
from wf_core.run_config import build_run_config
from wf_core.tags import ERROR_MESSAGE

SPEC = "img-edit-to-video"


def _resources(bench: Workbench, staging: Path | None) -> dict:
    """The bench's resources, with staged outputs kept in `staging` when given."""
    media = LocalMediaStorage(
        media_dir=str(bench.media_dir), staging_url=str(staging) if staging else None
    )
    return {**bench.resources(), "media_storage": media}


def _failure(instance: dg.DagsterInstance, run_id: str) -> dict:
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        data = record.dagster_event.step_failure_data
        return {k: v.value for k, v in data.user_failure_data.metadata.items()}
    raise AssertionError("no step failure recorded")


def _run_steps(spec, instance, resources, job_id, steps, options=None):
    """Materialize only `steps` of the job, on the checkpoints of the others."""
    return dg.materialize(
        build_workflow_assets(spec),
        instance=instance,
        partition_key=job_id,
        resources=resources,
        selection=[asset_key_for(spec, name) for name in steps],
        run_config=build_run_config(spec, options, str(SAMPLE_IMAGE), steps=set(steps)),
        raise_on_error=False,
    )


def _resume(spec, instance, resources, job_id, options=None) -> dg.ExecuteInProcessResult:
    """Run every step of the job that has no checkpoint yet, as a resume does."""
    remaining = steps_to_run(spec, completed_steps(instance, spec, job_id))
    return _run_steps(spec, instance, resources, job_id, remaining, options)


def _assert_storage_failure(instance, result, step: str, machine_paths: list[Path]) -> str:
    """The run failed at `step` as retryable server_unavailable; its message names no path."""
    assert not result.success
    failure = _failure(instance, result.run_id)
    assert failure["step"] == step
    assert failure["error_type"] == "server_unavailable"
    assert failure["retryable"] is True
    message = failure["message"]
    assert message == instance.get_run_by_id(result.run_id).tags[ERROR_MESSAGE]
    assert "Media storage" in message
    for path in machine_paths:
        assert str(path) not in message
    assert "/" not in message and "Errno" not in message
    return message


def _block_edit_output(bench: Workbench, job_id: str) -> Path:
    """A directory where the edit's file must go: os.replace onto it fails, even for root."""
    blocker = bench.media_dir / "jobs" / job_id / "image_edit.png"
    blocker.mkdir(parents=True)
    return blocker


def test_unwritable_output_fails_retryable_without_a_path(specs, bench, tmp_path) -> None:
    spec = specs[SPEC]
    job_id = new_job_id()
    _block_edit_output(bench, job_id)
    with dg.instance_for_test() as instance:
        result = run_job(spec, instance, _resources(bench, tmp_path / "staged"), job_id)
        message = _assert_storage_failure(
            instance, result, "image_edit", [tmp_path, bench.media_dir]
        )
        assert message == "Media storage could not store the file (is a directory)"
        assert completed_steps(instance, spec, job_id) == {"upload"}


def test_resume_after_storage_recovers_pays_for_the_edit_once(specs, bench, tmp_path) -> None:
    spec = specs[SPEC]
    job_id = new_job_id()
    staging = tmp_path / "staged"
    blocker = _block_edit_output(bench, job_id)
    with dg.instance_for_test() as instance:
        first = run_job(spec, instance, _resources(bench, staging), job_id)
        _assert_storage_failure(instance, first, "image_edit", [tmp_path])
        # The paid result waits in the staging store while media storage is down.
        assert [p.name for p in (staging / job_id).iterdir()] == ["image_edit.json"]

        blocker.rmdir()
        second = _resume(spec, instance, _resources(bench, staging), job_id)
        assert second.success
        assert completed_steps(instance, spec, job_id) == {
            "upload",
            "image_edit",
            "video_generation",
        }
        edit = second.output_for_node(spec.op_name("image_edit"))["output"]
    assert [c["task"] for c in bench.calls()] == ["image_edit", "image_to_video"]
    stored = bench.media_dir / f"{edit['public_id']}.{edit['format']}"
    assert stored.is_file() and stored.stat().st_size == edit["bytes"] > 0
    # Stored, so no longer staged.
    assert not (staging / job_id).exists()


def test_job_folder_replaced_by_a_file_then_restored(specs, bench, tmp_path, monkeypatch) -> None:
    spec = specs[SPEC]
    job_id = new_job_id()
    # No staging_url on the resource: STAGING_URL picks the place, as in a deployment.
    monkeypatch.setenv("STAGING_URL", str(tmp_path / "staged-from-env"))
    job_folder = bench.media_dir / "jobs" / job_id
    job_folder.parent.mkdir(parents=True)
    job_folder.write_text("not a folder")
    with dg.instance_for_test() as instance:
        first = run_job(spec, instance, _resources(bench, None), job_id)
        _assert_storage_failure(instance, first, "upload", [tmp_path, job_folder])
        assert bench.calls() == []

        job_folder.unlink()
        second = _resume(spec, instance, _resources(bench, None), job_id)
        assert second.success
    assert [c["task"] for c in bench.calls()] == ["image_edit", "image_to_video"]
    assert (tmp_path / "staged-from-env").is_dir()
    assert not (tmp_path / "staged-from-env" / job_id).exists()


def test_unreadable_source_fails_retryable_then_resumes(specs, bench, tmp_path) -> None:
    spec = specs[SPEC]
    job_id = new_job_id()
    resources = _resources(bench, tmp_path / "staged")
    with dg.instance_for_test() as instance:
        ensure_partition(instance, job_id)
        upload = _run_steps(spec, instance, resources, job_id, ["upload"])
        assert upload.success
        job_folder = bench.media_dir / "jobs" / job_id
        aside = job_folder.with_name(f"{job_id}.aside")
        job_folder.rename(aside)
        job_folder.write_text("not a folder")

        failed = _resume(spec, instance, resources, job_id)
        message = _assert_storage_failure(instance, failed, "image_edit", [tmp_path])
        assert message == "Media storage could not read the file (not a directory)"

        job_folder.unlink()
        aside.rename(job_folder)
        assert _resume(spec, instance, resources, job_id).success


def test_a_changed_request_is_not_served_from_staging(specs, bench, tmp_path) -> None:
    spec = specs[SPEC]
    job_id = new_job_id()
    staging = tmp_path / "staged"
    blocker = _block_edit_output(bench, job_id)
    with dg.instance_for_test() as instance:
        first = run_job(spec, instance, _resources(bench, staging), job_id)
        _assert_storage_failure(instance, first, "image_edit", [tmp_path])

        blocker.rmdir()
        options = {"prompts": {"image_edit": "a different edit"}}
        second = _resume(spec, instance, _resources(bench, staging), job_id, options)
        assert second.success
        edit = second.output_for_node(spec.op_name("image_edit"))["output"]
    # Another prompt is another request: the staged result of the first one is not it.
    assert [c["task"] for c in bench.calls()] == ["image_edit", "image_edit", "image_to_video"]
    assert edit["prompt"] == "a different edit"
    assert not (staging / job_id).exists()


def test_storage_errors_name_no_path_and_ids_stay_inside(tmp_path) -> None:
    storage = LocalMediaStorage(media_dir=str(tmp_path / "media"))
    (tmp_path / "media" / "jobs" / "j1" / "out.png").mkdir(parents=True)
    with pytest.raises(RetryableError) as raised:
        storage.put("jobs/j1/out", b"png", "png", "image")
    assert raised.value.error_type == "server_unavailable"
    assert str(tmp_path) not in raised.value.message
    # A half-written temp file is not left behind.
    assert [p.name for p in (tmp_path / "media" / "jobs" / "j1").iterdir()] == ["out.png"]

    with pytest.raises(ValueError, match="leaves the media folder"):
        storage.put("../outside", b"x", "png", "image")

    (tmp_path / "media" / "jobs" / "j2").write_text("not a folder")
    gone = StoredMedia("/media/jobs/j2/in.jpg", "jobs/j2/in", "jpg", "image", 3)
    with pytest.raises(RetryableError) as raised:
        storage.read(gone)
    assert raised.value.error_type == "server_unavailable"
    assert str(tmp_path) not in raised.value.message

    # A file missing from an intact folder is lost, not an outage: retrying cannot help.
    (tmp_path / "media" / "jobs" / "j3").mkdir()
    lost = StoredMedia("/media/jobs/j3/in.jpg", "jobs/j3/in", "jpg", "image", 3)
    with pytest.raises(HardError) as raised:
        storage.read(lost)
    assert raised.value.error_type == "internal"
    assert raised.value.message == "Media file jobs/j3/in.jpg is missing from storage"
