"""The offline provider makes real media and simulates faults on request."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from resources.local_media import LocalMediaStorage
from resources.local_provider import LocalModelProvider
from resources.model_provider import GenerationRequest
from tests.conftest import SAMPLE_IMAGE
from wf_core.errors import HardError, RetryableError


@pytest.fixture
def media(tmp_path) -> LocalMediaStorage:
    return LocalMediaStorage(media_dir=str(tmp_path / "media"))


@pytest.fixture
def source(media):
    return media.put("jobs/j/upload", SAMPLE_IMAGE.read_bytes(), "jpg", "image")


def _request(source, task: str, model: str, prompt: str = "p") -> GenerationRequest:
    return GenerationRequest(
        job_id="j", step="s", task=task, model=model, prompt=prompt, source=source
    )


@pytest.mark.parametrize(
    "task,model,size",
    [
        ("image_edit", "nano-banana", (640, 480)),
        ("image_style", "flux-kontext-pro", (640, 480)),
        ("image_upscale", "recraft-crisp-upscale", (1280, 960)),
    ],
)
def test_image_tasks_make_decodable_images(media, source, task, model, size) -> None:
    result = LocalModelProvider().generate(_request(source, task, model), media)
    image = Image.open(io.BytesIO(result.data))
    image.load()
    assert image.size == size and result.format == "png" and result.provider == "local"


def test_unknown_model_is_model_not_found(media, source) -> None:
    with pytest.raises(HardError) as caught:
        LocalModelProvider().generate(_request(source, "image_edit", "gpt-99"), media)
    assert caught.value.error_type == "model_not_found"


def test_model_that_cannot_run_the_task(media, source) -> None:
    with pytest.raises(HardError, match="cannot run"):
        LocalModelProvider().generate(_request(source, "image_edit", "kling/v1.6"), media)


def test_faults_by_model_or_task(media, source, tmp_path) -> None:
    faults = tmp_path / "faults.json"
    faults.write_text(
        '{"nano-banana": {"error_type": "rate_limit", "retry_after": 12},'
        ' "image_style": {"error_type": "content_rejected"}}'
    )
    provider = LocalModelProvider(fault_file=str(faults))
    with pytest.raises(RetryableError) as retryable:
        provider.generate(_request(source, "image_edit", "nano-banana"), media)
    assert retryable.value.error_type == "rate_limit" and retryable.value.retry_after == 12
    with pytest.raises(HardError) as hard:
        provider.generate(_request(source, "image_style", "flux-kontext-pro"), media)
    assert hard.value.error_type == "content_rejected"
    provider.generate(_request(source, "image_edit", "flux-kontext-pro"), media)


def test_latency_reports_progress(media, source) -> None:
    seen = []
    LocalModelProvider(latency_seconds=0.2).generate(
        _request(source, "image_edit", "nano-banana"), media, lambda p, m: seen.append(p)
    )
    assert seen and seen[-1] == 90


def test_local_media_refuses_ids_outside_its_folder(media) -> None:
    with pytest.raises(ValueError):
        media.put("../../escape", b"x", "png", "image")


def test_local_media_inlines_files_for_remote_providers(media, source) -> None:
    assert media.provider_url(source).startswith("data:image/jpeg;base64,/9j/")
