"""The seed workflow on the cloud resources, chosen from the environment, against fakes."""

from __future__ import annotations

import dagster as dg

from definitions import build_resources
from resources.cloudinary_storage import CloudinaryMediaStorage
from resources.replicate_provider import ReplicateModelProvider
from tests.conftest import run_job
from tests.fakes.cloudinary_server import FakeCloudinary
from tests.fakes.replicate_fixtures import fake  # noqa: F401  (the fake Replicate fixture
from tests.parked_harness import ParkedDriver
from wf_core.job_ids import new_job_id


def test_seed_workflow_on_replicate_and_cloudinary(fake, specs, tmp_path, monkeypatch) -> None:  # noqa: F811
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    with FakeCloudinary() as cloud:
        monkeypatch.setenv("CLOUDINARY_URL", cloud.account_url())
        monkeypatch.setenv("CLOUDINARY_UPLOAD_PREFIX", cloud.base_url)
        resources = build_resources()
        assert isinstance(resources["model_provider"], ReplicateModelProvider)
        assert isinstance(resources["media_storage"], CloudinaryMediaStorage)
        spec = specs["img-edit-to-video"]
        job_id = new_job_id()
        with dg.instance_for_test() as instance:
            # Each generation step parks; the sensor finishes it in a continuation run.
            results = [run_job(spec, instance, resources, job_id)]
            results += ParkedDriver(instance, specs, resources).settle(job_id)
            assert all(result.success for result in results) and len(results) == 3
            outputs = {
                e.asset_key.path[1]: e.materialization.metadata["checkpoint"].value["output"]
                for result in results
                for e in result.get_asset_materialization_events()
            }
        creates = fake.creates
        assert [c.path for c in creates] == [
            "/v1/models/google/nano-banana/predictions",
            "/v1/models/minimax/video-01/predictions",
        ]
        # Replicate was handed our Cloudinary copies, never a local path.
        assert creates[0].body["input"]["image_input"] == [outputs["upload"]["image_url"]]
        assert (
            creates[1].body["input"]["first_frame_image"]
            == outputs["image_edit"]["edited_image_url"]
        )
        assert set(cloud.assets) == {
            ("image", f"jobs/{job_id}/upload"),
            ("image", f"jobs/{job_id}/image_edit"),
            ("video", f"jobs/{job_id}/video_generation"),
        }
        video = outputs["video_generation"]
        assert video["video_url"].startswith(cloud.base_url)
        assert video["provider"] == "replicate" and video["prediction_id"]
        # The provider's (expiring) URL is kept only as provenance.
        assert (
            video["provider_url"].startswith(fake.url)
            and video["provider_url"] != video["video_url"]
        )
        assert video["model_used"] == "minimax/video-01" and video["duration"] > 0
