"""Cloudinary storage through the real SDK, against a loopback fake of the Upload API."""

from __future__ import annotations

import io
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
import imageio_ffmpeg
import pytest
from PIL import Image

from resources.cloudinary_storage import CloudinaryMediaStorage
from resources.media_storage import media_public_id
from tests.conftest import SAMPLE_IMAGE
from tests.fakes.cloudinary_server import FakeCloudinary
from wf_assets.factory import build_workflow_assets
from wf_assets.resume import ensure_partition
from wf_core.errors import HardError, RetryableError, WorkflowError, classify
from wf_core.job_ids import new_job_id
from wf_core.run_config import build_run_config


@pytest.fixture
def fake() -> Iterator[FakeCloudinary]:
    """A fresh fake Cloudinary account on a loopback port."""
    with FakeCloudinary() as server:
        yield server


@pytest.fixture
def storage(fake: FakeCloudinary) -> CloudinaryMediaStorage:
    """The resource, pointed at the fake through the SDK's upload_prefix."""
    return CloudinaryMediaStorage(
        cloudinary_url=fake.account_url(), upload_prefix=fake.base_url, timeout=5
    )


def make_png(color: str = "red", size: tuple[int, int] = (32, 24)) -> bytes:
    """A small real PNG."""
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="session")
def mp4(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A small real H.264 MP4: 8 frames of 64x48 at 8 fps."""
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    writer = imageio_ffmpeg.write_frames(str(path), (64, 48), fps=8, codec="libx264")
    writer.send(None)
    for shade in range(8):
        writer.send(bytes([shade * 30]) * (64 * 48 * 3))
    writer.close()
    return path.read_bytes()


def test_image_upload_returns_the_checkpoint_fields(fake, storage) -> None:
    png = make_png()
    stored = storage.put(media_public_id("job-1", "upload"), png, "png", "image")
    assert (stored.public_id, stored.format, stored.resource_type, stored.bytes) == (
        "jobs/job-1/upload",
        "png",
        "image",
        len(png),
    )
    assert re.fullmatch(
        rf"/{fake.cloud_name}/image/upload/v\d+/jobs/job-1/upload\.png", urlsplit(stored.url).path
    )
    [upload] = fake.uploads()
    assert upload.path == f"/v1_1/{fake.cloud_name}/image/upload"
    sent = {k: upload.fields[k] for k in ("public_id", "asset_folder", "type")}
    assert sent == {
        "public_id": "jobs/job-1/upload",
        "asset_folder": "jobs/job-1",
        "type": "upload",
    }
    flags = {k: upload.fields[k] for k in ("overwrite", "invalidate", "unique_filename")}
    assert flags == {"overwrite": "1", "invalidate": "1", "unique_filename": "0"}
    answer = upload.response
    assert (answer["width"], answer["height"], answer["secure_url"]) == (32, 24, stored.url)
    assert storage.read(stored) == png
    assert storage.exists(stored)
    assert storage.provider_url(stored) == stored.url


def test_video_upload_uses_the_video_resource_type(fake, storage, mp4) -> None:
    stored = storage.put(media_public_id("job-1", "video_generation"), mp4, "mp4", "video")
    assert (stored.format, stored.resource_type, stored.bytes) == ("mp4", "video", len(mp4))
    assert urlsplit(stored.url).path.endswith("/jobs/job-1/video_generation.mp4")
    assert f"/{fake.cloud_name}/video/upload/v" in stored.url
    [upload] = fake.uploads()
    assert upload.path == f"/v1_1/{fake.cloud_name}/video/upload"
    answer = upload.response
    assert (answer["resource_type"], answer["width"], answer["height"]) == ("video", 64, 48)
    assert answer["duration"] == pytest.approx(1.0, abs=0.2)
    assert storage.read(stored) == mp4


def test_a_repeated_upload_overwrites_the_same_public_id(fake, storage) -> None:
    public_id = media_public_id("job-1", "image_edit")
    first = storage.put(public_id, make_png("red"), "png", "image")
    blue = make_png("blue")
    second = storage.put(public_id, blue, "png", "image")
    assert first.public_id == second.public_id == public_id
    assert list(fake.assets) == [("image", public_id)]
    answers = [upload.response for upload in fake.uploads()]
    assert "overwritten" not in answers[0] and answers[1]["overwritten"] is True
    assert answers[1]["version"] > answers[0]["version"]
    assert storage.read(second) == blue


def test_each_job_gets_its_own_folder(fake, storage) -> None:
    for job in ("job-a", "job-b"):
        for step in ("upload", "image_edit"):
            storage.put(media_public_id(job, step), make_png(), "png", "image")
    assert sorted(public_id for _, public_id in fake.assets) == [
        "jobs/job-a/image_edit",
        "jobs/job-a/upload",
        "jobs/job-b/image_edit",
        "jobs/job-b/upload",
    ]
    assert {upload.fields["asset_folder"] for upload in fake.uploads()} == {
        "jobs/job-a",
        "jobs/job-b",
    }


def test_a_wrong_secret_fails_the_signature_as_invalid_key(fake) -> None:
    wrong = CloudinaryMediaStorage(
        cloudinary_url=fake.account_url(api_secret="not-the-secret"), upload_prefix=fake.base_url
    )
    with pytest.raises(RetryableError) as err:
        wrong.put("jobs/j/upload", make_png(), "png", "image")
    assert err.value.error_type == "invalid_key"
    assert "Invalid Signature" in err.value.message
    assert [upload.status for upload in fake.uploads()] == [401]
    assert not fake.assets


def test_a_malformed_cloudinary_url_is_invalid_key() -> None:
    storage = CloudinaryMediaStorage(cloudinary_url="https://api.cloudinary.com/demo")
    with pytest.raises(RetryableError) as err:
        storage.put("jobs/j/upload", make_png(), "png", "image")
    assert err.value.error_type == "invalid_key"


@pytest.mark.parametrize(
    ("status", "message", "error_type"),
    [
        (400, "Invalid transformation", "invalid_input"),
        (400, "File size too large. Got 20971520. Maximum is 10485760.", "file_too_large"),
        (401, "Invalid api_key", "invalid_key"),
        (403, "Account disabled", "invalid_key"),
        (404, "Invalid cloud_name", "invalid_key"),
        (420, "Rate Limit Exceeded", "rate_limit"),
        (429, "Too Many Requests", "rate_limit"),
        (500, "Internal Server Error", "server_unavailable"),
        (502, "Bad Gateway", "server_unavailable"),
        (503, "Service Unavailable", "server_unavailable"),
    ],
)
def test_upload_errors_map_into_the_taxonomy(fake, storage, status, message, error_type) -> None:
    fake.fail_next(status, message)
    with pytest.raises(WorkflowError) as err:
        storage.put("jobs/j/upload", make_png(), "png", "image")
    record = classify(err.value, "upload", 0)
    assert (record.error_type, record.provider) == (error_type, "cloudinary")
    assert message in record.message
    # The fault is spent: the same upload now succeeds.
    assert storage.put("jobs/j/upload", make_png(), "png", "image").public_id == "jobs/j/upload"


@pytest.mark.parametrize(
    ("status", "error_type"), [(502, "server_unavailable"), (413, "file_too_large")]
)
def test_a_proxy_page_instead_of_json_is_mapped_by_status(
    fake, storage, status, error_type
) -> None:
    fake.fail_next(status, body=b"<html><body>nginx</body></html>")
    with pytest.raises(WorkflowError) as err:
        storage.put("jobs/j/upload", make_png(), "png", "image")
    assert err.value.error_type == error_type


def test_a_file_that_is_not_an_image_is_invalid_input(fake, storage) -> None:
    with pytest.raises(HardError) as err:
        storage.put("jobs/j/upload", b"this is not a picture", "png", "image")
    assert err.value.error_type == "invalid_input"
    assert "Invalid image file" in err.value.message


def test_a_refused_connection_is_server_unavailable(fake) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    storage = CloudinaryMediaStorage(
        cloudinary_url=fake.account_url(), upload_prefix=f"http://127.0.0.1:{closed_port}"
    )
    with pytest.raises(RetryableError) as err:
        storage.put("jobs/j/upload", make_png(), "png", "image")
    assert err.value.error_type == "server_unavailable"


def test_a_slow_answer_is_a_timeout(fake) -> None:
    storage = CloudinaryMediaStorage(
        cloudinary_url=fake.account_url(), upload_prefix=fake.base_url, timeout=0.3
    )
    fake.fail_next(500, delay=1.0)
    with pytest.raises(RetryableError) as err:
        storage.put("jobs/j/upload", make_png(), "png", "image")
    assert err.value.error_type == "timeout"


def test_a_deleted_file_no_longer_exists_and_cannot_be_read(fake, storage) -> None:
    stored = storage.put("jobs/j/upload", make_png(), "png", "image")
    fake.delete("image", "jobs/j/upload")
    assert not storage.exists(stored)
    with pytest.raises(HardError) as err:
        storage.read(stored)
    assert err.value.error_type == "invalid_input"


def test_delivery_failures_map_into_the_taxonomy(fake, storage) -> None:
    stored = storage.put("jobs/j/upload", make_png(), "png", "image")
    fake.fail_next(429, on="delivery", headers={"Retry-After": "7"})
    with pytest.raises(RetryableError) as err:
        storage.read(stored)
    assert (err.value.error_type, err.value.retry_after) == ("rate_limit", 7)
    fake.fail_next(503, on="delivery")
    with pytest.raises(RetryableError) as err:
        storage.exists(stored)
    assert err.value.error_type == "server_unavailable"


def test_the_seed_workflow_checkpoints_point_at_cloudinary(fake, specs, bench, monkeypatch) -> None:
    # Wired as in production: the account comes from CLOUDINARY_URL through dg.EnvVar.
    monkeypatch.setenv("CLOUDINARY_URL", fake.account_url())
    storage = CloudinaryMediaStorage(
        cloudinary_url=dg.EnvVar("CLOUDINARY_URL"), upload_prefix=fake.base_url
    )
    spec = specs["img-edit-to-video"]
    job_id = new_job_id()
    with dg.instance_for_test() as instance:
        ensure_partition(instance, job_id)
        result = dg.materialize(
            build_workflow_assets(spec),
            instance=instance,
            partition_key=job_id,
            resources={**bench.resources(), "media_storage": storage},
            run_config=build_run_config(spec, None, str(SAMPLE_IMAGE)),
            tags={"wf/job_id": job_id},
        )
        assert result.success
        outputs = {
            event.asset_key.path[1]: event.materialization.metadata["checkpoint"].value["output"]
            for event in result.get_asset_materialization_events()
        }
    assert set(fake.assets) == {
        ("image", f"jobs/{job_id}/upload"),
        ("image", f"jobs/{job_id}/image_edit"),
        ("video", f"jobs/{job_id}/video_generation"),
    }
    upload = outputs["upload"]
    assert upload["image_url"].startswith(f"{fake.base_url}/{fake.cloud_name}/image/upload/")
    assert (upload["format"], upload["bytes"]) == ("jpg", Path(SAMPLE_IMAGE).stat().st_size)
    video = outputs["video_generation"]
    assert f"/{fake.cloud_name}/video/upload/" in video["video_url"]
    assert (video["public_id"], video["format"]) == (f"jobs/{job_id}/video_generation", "mp4")
    # Each generation step read its input back from the delivery URL.
    assert [r.method for r in fake.requests if r.method != "POST"] == ["GET", "GET"]
