"""The whole seed workflow materializes offline and makes a real video."""

from __future__ import annotations

import io

import dagster as dg
import imageio_ffmpeg
from PIL import Image

from tests.conftest import run_job
from wf_assets.resume import completed_steps
from wf_core.job_ids import new_job_id


def _run(spec, bench, instance, job_id, options=None):
    return run_job(spec, instance, bench.resources(), job_id, options, tags={"wf/job_id": job_id})


def test_seed_workflow_makes_a_real_mp4(specs, bench) -> None:
    spec = specs["img-edit-to-video"]
    job_id = new_job_id()
    with dg.instance_for_test() as instance:
        result = _run(spec, bench, instance, job_id)
        assert result.success
        assert completed_steps(instance, spec, job_id) == {
            "upload",
            "image_edit",
            "video_generation",
        }
        video = result.output_for_node(spec.op_name("video_generation"))
    out = video["output"]
    assert set(out) >= {"video_url", "model_used", "prompt", "duration"}
    assert out["model_used"] == "minimax/video-01"
    path = bench.media_dir / f"{out['public_id']}.{out['format']}"
    frames, seconds = imageio_ffmpeg.count_frames_and_secs(str(path))
    assert frames > 1 and 1.5 <= seconds <= 3
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    reader.close()
    assert meta["codec"].startswith("h264")
    # The sample is 640x480; the provider scales its longest side to 384.
    assert tuple(meta["size"]) == (384, 288)
    assert out["video_url"] == f"/media/jobs/{job_id}/video_generation.mp4"


def test_checkpoints_hold_seed_fields_and_times(specs, bench) -> None:
    spec = specs["img-edit-to-video"]
    job_id = new_job_id()
    with dg.instance_for_test() as instance:
        result = _run(spec, bench, instance, job_id, {"prompts": {"image_edit": "make it blue"}})
        assert result.success
        events = {
            e.asset_key.path[1]: e.materialization
            for e in result.get_asset_materialization_events()
        }
    upload = events["upload"].metadata["checkpoint"].value
    assert {"image_url", "public_id", "format"} <= set(upload["output"])
    assert upload["output"]["format"] == "jpg"
    edit = events["image_edit"].metadata["checkpoint"].value
    assert edit["output"]["prompt"] == "make it blue"
    assert {"edited_image_url", "model_used", "prompt"} <= set(edit["output"])
    for name, event in events.items():
        checkpoint = event.metadata["checkpoint"].value
        assert checkpoint["started_at"] <= checkpoint["completed_at"]
        # The checkpoint file and the metadata are the same dict.
        stored = bench.resources()["checkpoint_io"].read(dg.AssetKey([spec.id, name]), job_id)
        assert stored == checkpoint


def test_edited_image_depends_on_the_prompt(specs, bench) -> None:
    spec = specs["img-edit-to-video"]
    images = []
    with dg.instance_for_test() as instance:
        for prompt in ("a red sunset", "a green forest"):
            job_id = new_job_id()
            assert _run(spec, bench, instance, job_id, {"prompts": {"image_edit": prompt}}).success
            images.append((bench.media_dir / f"jobs/{job_id}/image_edit.png").read_bytes())
    first, second = (Image.open(io.BytesIO(b)).convert("RGB") for b in images)
    assert first.size == second.size == (640, 480)
    assert first.getpixel((10, 10)) != second.getpixel((10, 10))


def test_style_transfer_workflow_upscales_2x(specs, bench) -> None:
    spec = specs["style-transfer-video"]
    job_id = new_job_id()
    with dg.instance_for_test() as instance:
        assert _run(spec, bench, instance, job_id).success
    upscaled = Image.open(bench.media_dir / f"jobs/{job_id}/upscale.png")
    assert upscaled.size == (1280, 960)
    assert [c["task"] for c in bench.calls()] == ["image_style", "image_upscale", "image_to_video"]


def test_bad_input_file_is_a_permanent_failure(specs, bench, tmp_path) -> None:
    spec = specs["img-edit-to-video"]
    junk = tmp_path / "fake.jpg"
    junk.write_bytes(b"MZ\x90\x00 this is an executable")
    job_id = new_job_id()
    with dg.instance_for_test() as instance:
        result = run_job(spec, instance, bench.resources(), job_id, source=junk)
        assert not result.success
        run = instance.get_run_by_id(result.run_id)
        assert run.tags["wf/error_type"] == "invalid_input"
        assert run.tags["wf/retryable"] == "false"
        assert completed_steps(instance, spec, job_id) == set()
    assert bench.calls() == []
