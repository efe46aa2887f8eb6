"""The offline provider: real media per task, simulated faults at submit, simulated latency."""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from resources.local_media import LocalMediaStorage
from resources.local_provider import VIDEO_SECONDS, LocalModelProvider
from resources.media_storage import StoredMedia
from resources.model_provider import GenerationRequest, PreparedCall
from resources.mp4_info import mp4_duration
from tests.conftest import SAMPLE_IMAGE, migrated
from wf_core.errors import HardError, RetryableError
from wf_store.predictions import Prediction, PredictionStore

HOUR = 3600.0


@pytest.fixture
def media(tmp_path: Path) -> LocalMediaStorage:
    """Local media storage in the test's folder."""
    return LocalMediaStorage(media_dir=str(tmp_path / "media"))


@pytest.fixture
def source(media: LocalMediaStorage) -> StoredMedia:
    """The sample image (640x480), stored as job j's upload."""
    return media.put("jobs/j/upload", SAMPLE_IMAGE.read_bytes(), "jpg", "image")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[PredictionStore]:
    """A prediction store on a SQLite file. The local provider's simulated latency is
    measured on the wall clock, so the store keeps the wall clock too; no test here
    asserts on time, only on a latency of 0 (done) or of an hour (running)."""
    store = PredictionStore(migrated(f"sqlite:///{tmp_path / 'state.db'}"))
    yield store
    store.close()


def _request(source: StoredMedia, task: str, model: str, prompt: str = "p") -> GenerationRequest:
    return GenerationRequest(
        job_id="j", step="s", task=task, model=model, prompt=prompt, source=source
    )


def _intend(store: PredictionStore, call: PreparedCall, model: str) -> Prediction:
    """The intent row a generation step records before it submits `call`."""
    return store.intend(
        job_id="j",
        step="s",
        attempt=1,
        workflow_id="wf",
        provider="local",
        model=model,
        provider_model=call.provider_model,
        input_digest=call.digest,
        provider_input=call.provider_input,
        run_id="r1",
    )


def _submitted(
    provider: LocalModelProvider,
    store: PredictionStore,
    media: LocalMediaStorage,
    request: GenerationRequest,
) -> Prediction:
    """Prepare, intend, submit and record the create, as a generation step does."""
    call = provider.prepare(request, media)
    intent = _intend(store, call, request.model)
    created = provider.submit(call, intent, None)
    return store.created(
        intent.id, created.id, created.status, intent.created_at, expected_at=created.expected_at
    )


@pytest.mark.parametrize(
    "task,model,size",
    [
        ("image_edit", "nano-banana", (640, 480)),
        ("image_style", "flux-kontext-pro", (640, 480)),
        ("image_upscale", "recraft-crisp-upscale", (1280, 960)),
    ],
)
def test_image_tasks_make_decodable_images(media, source, store, task, model, size) -> None:
    provider = LocalModelProvider()
    request = _request(source, task, model)
    row = _submitted(provider, store, media, request)
    assert row.state == "completed" and row.succeeded
    result = provider.collect(row, request, media)
    image = Image.open(io.BytesIO(result.data))
    image.load()
    assert image.size == size and result.format == "png" and result.provider == "local"
    assert result.prediction_id == row.prediction_id


@pytest.mark.parametrize("model", ["kling/v1.6", "minimax/video-01"])
def test_video_task_makes_a_real_mp4(media, source, store, model) -> None:
    provider = LocalModelProvider()
    request = _request(source, "image_to_video", model)
    result = provider.collect(_submitted(provider, store, media, request), request, media)
    assert result.format == "mp4" and result.data[4:8] == b"ftyp"
    assert result.extra == {"duration": VIDEO_SECONDS}
    assert mp4_duration(result.data) == pytest.approx(VIDEO_SECONDS, abs=0.1)


def test_the_same_prompt_renders_the_same_image(media, source, store) -> None:
    provider = LocalModelProvider()
    request = _request(source, "image_edit", "nano-banana", prompt="a hat")
    first = provider.collect(_submitted(provider, store, media, request), request, media)
    again = provider.collect(_submitted(provider, store, media, request), request, media)
    assert first.data == again.data


def test_prepare_names_the_source_by_id_and_is_stable(media, source) -> None:
    provider = LocalModelProvider()
    call = provider.prepare(_request(source, "image_edit", "nano-banana"), media)
    assert call.provider_model == "nano-banana"
    assert call.provider_input["image"] == "media:jobs/j/upload.jpg"
    assert provider.prepare(_request(source, "image_edit", "nano-banana"), media) == call
    other = provider.prepare(_request(source, "image_edit", "nano-banana", prompt="q"), media)
    assert other.digest != call.digest


def test_unknown_model_is_model_not_found_at_prepare(media, source) -> None:
    with pytest.raises(HardError) as caught:
        LocalModelProvider().prepare(_request(source, "image_edit", "gpt-99"), media)
    assert caught.value.error_type == "model_not_found"


def test_model_that_cannot_run_the_task_is_model_not_found(media, source) -> None:
    with pytest.raises(HardError, match="cannot run") as caught:
        LocalModelProvider().prepare(_request(source, "image_edit", "kling/v1.6"), media)
    assert caught.value.error_type == "model_not_found"


def _row(store: PredictionStore, intent_id: str) -> Prediction:
    found = store.get(intent_id)
    assert found is not None
    return found


def _calls(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_faults_by_model_or_task_are_raised_at_submit(media, source, store, tmp_path) -> None:
    faults, log = tmp_path / "faults.json", tmp_path / "calls.jsonl"
    faults.write_text(
        json.dumps(
            {
                "nano-banana": {"error_type": "rate_limit", "retry_after": 12},
                "image_style": {"error_type": "content_rejected"},
            }
        )
    )
    provider = LocalModelProvider(fault_file=str(faults), call_log=str(log))
    edit = _request(source, "image_edit", "nano-banana")
    call = provider.prepare(edit, media)  # prepare never meets a fault
    with pytest.raises(RetryableError) as retryable:
        provider.submit(call, _intend(store, call, "nano-banana"), None)
    assert retryable.value.error_type == "rate_limit" and retryable.value.retry_after == 12
    # A simulated refusal is certain: nothing was made, nothing to look for.
    assert provider.create_may_have_arrived(retryable.value) is False
    style = _request(source, "image_style", "flux-kontext-pro")
    call = provider.prepare(style, media)
    with pytest.raises(HardError) as hard:
        provider.submit(call, _intend(store, call, "flux-kontext-pro"), None)
    assert hard.value.error_type == "content_rejected"
    # Neither model nor task matches: no fault.
    _submitted(provider, store, media, _request(source, "image_edit", "flux-kontext-pro"))
    # Faults without `times` stay.
    with pytest.raises(RetryableError):
        _submitted(provider, store, media, edit)
    assert [(c["model"], c["task"], c["created"]) for c in _calls(log)] == [
        ("nano-banana", "image_edit", False),
        ("flux-kontext-pro", "image_style", False),
        ("flux-kontext-pro", "image_edit", True),
        ("nano-banana", "image_edit", False),
    ]


def test_a_counted_fault_applies_that_many_times(media, source, store, tmp_path) -> None:
    faults = tmp_path / "faults.json"
    faults.write_text(json.dumps({"image_edit": {"error_type": "server_unavailable", "times": 2}}))
    provider = LocalModelProvider(fault_file=str(faults))
    request = _request(source, "image_edit", "nano-banana")
    for _ in range(2):
        with pytest.raises(RetryableError) as caught:
            _submitted(provider, store, media, request)
        assert caught.value.error_type == "server_unavailable"
    assert json.loads(faults.read_text()) == {}
    assert _submitted(provider, store, media, request).succeeded


def test_a_latency_fault_moves_the_end_later(media, source, store, tmp_path) -> None:
    faults = tmp_path / "faults.json"
    faults.write_text(json.dumps({"image_edit": {"latency": HOUR}}))
    provider = LocalModelProvider(fault_file=str(faults), latency_seconds=0)
    row = _submitted(provider, store, media, _request(source, "image_edit", "nano-banana"))
    assert row.state == "parked" and row.expected_at == pytest.approx(row.created_at + HOUR)
    seen = provider.fetch(row)
    assert seen is not None and seen.status != "succeeded"


def test_the_call_log_names_job_step_task_model_source_and_intent(
    media, source, store, tmp_path
) -> None:
    log = tmp_path / "calls.jsonl"
    provider = LocalModelProvider(call_log=str(log))
    row = _submitted(provider, store, media, _request(source, "image_style", "nano-banana"))
    [call] = _calls(log)
    assert {k: call[k] for k in ("job_id", "step", "task", "model", "source", "intent")} == {
        "job_id": "j",
        "step": "s",
        "task": "image_style",
        "model": "nano-banana",
        "source": "jobs/j/upload",
        "intent": row.id,
    }
    assert call["created"] is True


def test_with_latency_fetch_reports_a_running_prediction(media, source, store) -> None:
    provider = LocalModelProvider(latency_seconds=HOUR)
    row = _submitted(provider, store, media, _request(source, "image_edit", "nano-banana"))
    assert row.state == "parked" and row.provider_status == "starting"
    assert row.expected_at == pytest.approx(row.created_at + HOUR)
    seen = provider.fetch(row)
    assert seen is not None and seen.id == row.prediction_id
    assert seen.status in ("starting", "processing") and seen.progress is not None
    assert 0 <= seen.progress < 100 and seen.expected_at == row.expected_at


def test_progress_and_status_follow_the_share_of_latency_spent(media, source, store) -> None:
    provider = LocalModelProvider(latency_seconds=HOUR)
    row = _submitted(provider, store, media, _request(source, "image_edit", "nano-banana"))
    # The same prediction seen from a row whose hour is nearly spent: processing, near done.
    started = row.created_at - 0.9 * HOUR
    late = dataclasses.replace(row, created_at=started, expected_at=started + HOUR)
    seen = provider.fetch(late)
    assert seen is not None and seen.status == "processing" and 89 <= (seen.progress or 0) < 100


def test_without_latency_fetch_reports_succeeded(media, source, store) -> None:
    provider = LocalModelProvider(latency_seconds=0)
    row = _submitted(provider, store, media, _request(source, "image_edit", "nano-banana"))
    seen = provider.fetch(row)
    assert seen is not None and (seen.status, seen.progress) == ("succeeded", 100)


def test_find_knows_a_submit_from_the_call_log(media, source, store, tmp_path) -> None:
    provider = LocalModelProvider(latency_seconds=HOUR, call_log=str(tmp_path / "calls.jsonl"))
    request = _request(source, "image_edit", "nano-banana")
    call = provider.prepare(request, media)
    never = _intend(store, call, "nano-banana")
    assert provider.find(never) is None
    submitted = _intend(store, call, "nano-banana")
    made = provider.submit(call, submitted, None)  # its answer is "lost": no store.created
    found = provider.find(submitted)
    assert found is not None and found.id == made.id and found.status == "starting"
    assert provider.find(never) is None


def test_failure_of_a_lost_or_stopped_prediction(media, source, store) -> None:
    provider = LocalModelProvider(latency_seconds=HOUR)
    request = _request(source, "image_edit", "nano-banana")
    row = _submitted(provider, store, media, request)
    store.apply_provider_update({"id": row.prediction_id, "status": "canceled"}, "poll")
    canceled = provider.failure(_row(store, row.id))
    assert isinstance(canceled, RetryableError) and canceled.error_type == "timeout"
    row = _submitted(provider, store, media, request)
    update = {"id": row.prediction_id, "status": "failed", "error": "boom"}
    store.apply_provider_update(update, "poll")
    failed = provider.failure(_row(store, row.id))
    assert isinstance(failed, HardError) and failed.error_type == "internal"
    assert "boom" in failed.message and failed.details == {
        "provider": "local",
        "model": "nano-banana",
    }


def test_simulated_invalid_key_fails_the_auth_check(tmp_path) -> None:
    faults = tmp_path / "faults.json"
    provider = LocalModelProvider(fault_file=str(faults), api_key="k1")
    assert provider.check_auth() is True
    faults.write_text(json.dumps({"image_edit": {"error_type": "invalid_key"}}))
    assert provider.check_auth() is False
    fingerprint = provider.credential_fingerprint()
    assert fingerprint and "k1" not in fingerprint
    assert LocalModelProvider(api_key="k2").credential_fingerprint() != fingerprint


def test_local_media_refuses_ids_outside_its_folder(media) -> None:
    with pytest.raises(ValueError):
        media.put("../../escape", b"x", "png", "image")


def test_local_media_inlines_files_for_remote_providers(media, source) -> None:
    assert media.provider_url(source).startswith("data:image/jpeg;base64,/9j/")
