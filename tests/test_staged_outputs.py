"""Staged outputs: a paid result is kept per job step and given back only to the same request."""

from __future__ import annotations

from dataclasses import replace

import pytest

from resources.media_storage import StoredMedia
from resources.model_provider import GeneratedMedia, GenerationRequest
from resources.staged_outputs import StagedOutputs, request_digest, staging_url
from wf_core.errors import RetryableError

SOURCE = StoredMedia("/media/jobs/j1/upload.jpg", "jobs/j1/upload", "jpg", "image", 10)
REQUEST = GenerationRequest("j1", "edit", "image_edit", "nano-banana", "make it blue", SOURCE)
RESULT = GeneratedMedia(
    data=b"\x89PNG bytes", format="png", provider="local", prediction_id="p1", extra={"a": 1}
)


def test_round_trip_then_drop(tmp_path) -> None:
    staged = StagedOutputs(str(tmp_path))
    assert staged.take(REQUEST) is None
    assert staged.keep(REQUEST, RESULT)
    assert staged.take(REQUEST) == RESULT
    staged.drop(REQUEST)
    assert staged.take(REQUEST) is None
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "change",
    [
        {"prompt": "make it red"},
        {"model": "flux-kontext-pro"},
        {"task": "image_style"},
        {"params": {"seed": 2}},
        {"source": replace(SOURCE, bytes=11)},
    ],
)
def test_a_request_asked_otherwise_gets_nothing(tmp_path, change) -> None:
    staged = StagedOutputs(str(tmp_path))
    staged.keep(REQUEST, RESULT)
    other = replace(REQUEST, **change)
    assert request_digest(other) != request_digest(REQUEST)
    assert staged.take(other) is None


def test_keys_stay_inside_the_root(tmp_path) -> None:
    with pytest.raises(ValueError):
        StagedOutputs(str(tmp_path)).path("../j1", "edit")


def test_an_unwritable_store_does_not_fail_the_step(tmp_path) -> None:
    (tmp_path / "file").write_text("not a folder")
    assert StagedOutputs(str(tmp_path / "file")).keep(REQUEST, RESULT) is False


def test_an_unreadable_store_is_retryable_rather_than_a_second_payment(tmp_path) -> None:
    (tmp_path / "j1" / "edit.json").mkdir(parents=True)
    with pytest.raises(RetryableError) as raised:
        StagedOutputs(str(tmp_path)).take(REQUEST)
    assert raised.value.error_type == "server_unavailable"
    assert str(tmp_path) not in raised.value.message


def test_location_defaults(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("STAGING_URL", raising=False)
    monkeypatch.setenv("CHECKPOINT_URL", "s3://bucket/checkpoints/")
    assert staging_url() == "s3://bucket/checkpoints/_staged"
    monkeypatch.setenv("STAGING_URL", str(tmp_path))
    assert staging_url() == str(tmp_path)
    assert staging_url("/configured") == "/configured"
