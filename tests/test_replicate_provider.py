"""The Replicate provider, tested only through a fake Replicate API on a loopback port."""

from __future__ import annotations

import pytest

from resources.model_provider import GenerationRequest
from resources.replicate_errors import DEFAULT_RETRY_AFTER
from tests.fakes import replicate_fixtures as fx
from tests.fakes.replicate_server import THROTTLED, Fault, Script, closed_port
from tests.fakes.sample_media import MP4_SECONDS, png_bytes
from wf_core.errors import WorkflowError

# The shared fixtures, bound here so that they stay local to these modules.
fake, provider, provider_config = fx.fake, fx.provider, fx.provider_config
ledger, media, source = fx.ledger, fx.media, fx.source


def request(source, model="nano-banana", task="image_edit", prompt="a hat") -> GenerationRequest:
    """A generation request for step "edit" of job j1."""
    return GenerationRequest("j1", "edit", task, model, prompt, source)


def test_image_prediction_round_trip(fake, provider, ledger, media, source) -> None:
    seen: list[tuple[int, str]] = []
    result = provider().generate(request(source), media, lambda p, m: seen.append((p, m)))
    [create] = fake.creates
    assert create.path == "/v1/models/google/nano-banana/predictions"
    assert create.headers["authorization"] == f"Bearer {fake.token}"
    assert create.headers["content-type"] == "application/json"
    assert create.headers["prefer"] == "wait=1" and create.headers["cancel-after"] == "30s"
    assert create.body["input"]["prompt"] == "a hat"
    assert create.body["input"]["image_input"][0].startswith("data:image/jpeg;base64,")
    assert result.data == png_bytes() and result.format == "png"
    assert result.provider == "replicate" and result.prediction_id in fake.predictions
    assert result.provider_url == f"{fake.url}/files/{result.prediction_id}/output.png"
    assert len(fake.gets) == 2 and not fake.cancels
    # Output files live on another host in production: our token must not go there.
    assert [d.headers.get("authorization") for d in fake.downloads] == [None]
    assert seen[0] == (15, "Prediction created") and all(15 <= p <= 90 for p, _ in seen)
    record = ledger.read("j1", "edit")
    assert record.prediction_id == result.prediction_id and record.status == "succeeded"


def test_sync_answer_needs_no_polling(fake, provider, media, source) -> None:
    fake.script = Script(starting_polls=0, processing_polls=0)
    result = provider().generate(request(source), media)
    assert result.data == png_bytes() and len(fake.creates) == 1 and not fake.gets


@pytest.mark.parametrize("model,duration", [("kling/v1.6", 5.0), ("minimax/video-01", MP4_SECONDS)])
def test_video_duration(fake, provider, media, source, model, duration) -> None:
    result = provider().generate(request(source, model, "image_to_video"), media)
    assert result.format == "mp4" and result.data[4:8] == b"ftyp"
    assert result.extra == {"duration": pytest.approx(duration, abs=0.05)}


def test_unknown_model_fails_before_any_call(fake, provider, media, source) -> None:
    with pytest.raises(WorkflowError) as failure:
        provider().generate(request(source, model="no-such-model"), media)
    assert failure.value.error_type == "model_not_found" and not fake.requests


def _create_fault(status, body, **headers):
    return lambda fake, env: fake.fail_creates(1, Fault(status, body, headers))


def _ends(outcome, error=None):
    return lambda fake, env: setattr(fake, "script", Script(outcome=outcome, error=error))


def _env(name, value):
    return lambda fake, env: env.setenv(name, value() if callable(value) else value)


def _refused() -> str:
    return f"http://127.0.0.1:{closed_port()}/v1"


def _slow_read(fake, env) -> None:
    fake.fail_gets(1, Fault(200, b"{}", delay=1.0))


def _unknown_model(fake, env) -> None:
    fake.models.clear()


def row(name: str, setup, error_type: str, wait: float | None = None):
    return pytest.param(setup, error_type, wait, id=name)


TOO_MANY = {"title": "Request was throttled", "detail": THROTTLED, "status": 429}
FIELDS = {"invalid_fields": [{"field": "input.prompt"}], "detail": "- input.prompt: required"}
NSFW = "NSFW content detected. Try running it again, or try a different prompt."
E005 = "The input or output was flagged as sensitive. Please try again. (E005)"
TAXONOMY = [
    row("401", _env("REPLICATE_API_TOKEN", "r8_wrong"), "invalid_key"),
    row("402", _create_fault(402, {"title": "Insufficient credit"}), "quota_exceeded"),
    row("429-header", _create_fault(429, TOO_MANY, **{"Retry-After": "7"}), "rate_limit", 7),
    row("429-body", _create_fault(429, TOO_MANY), "rate_limit", 30),
    row("429-html", _create_fault(429, "<html>slow</html>"), "rate_limit", DEFAULT_RETRY_AFTER),
    row("500", _create_fault(500, {"title": "Internal"}), "server_unavailable"),
    row("502-html", _create_fault(502, "<html>Bad Gateway</html>"), "server_unavailable"),
    row("503", _create_fault(503, {"title": "Unavailable"}), "server_unavailable"),
    row("504-empty", _create_fault(504, b""), "server_unavailable"),
    row("refused", _env("REPLICATE_API_BASE_URL", _refused), "server_unavailable"),
    row("read-timeout", _slow_read, "timeout"),
    row("aborted", _ends("aborted"), "timeout"),
    row("404-model", _unknown_model, "model_not_found"),
    row("422", _create_fault(422, FIELDS), "invalid_input"),
    row("failed-nsfw", _ends("failed", NSFW), "content_rejected"),
    row("failed-E005", _ends("failed", E005), "content_rejected"),
    row("failed-oom", _ends("failed", "CUDA out of memory"), "server_unavailable"),
    row("failed-other", _ends("failed", "KeyError: 'x'"), "internal"),
]


@pytest.mark.parametrize("setup,error_type,wait", TAXONOMY)
def test_taxonomy(fake, provider, monkeypatch, media, source, setup, error_type, wait) -> None:
    setup(fake, monkeypatch)
    with pytest.raises(WorkflowError) as failure:
        provider(request_timeout_seconds=0.5).generate(request(source), media)
    error = failure.value
    assert error.error_type == error_type
    assert error.details["provider"] == "replicate" and error.details["model"] == "nano-banana"
    if wait is not None:
        assert error.retry_after == pytest.approx(wait)
    if error_type == "invalid_input":
        assert error.details["invalid_fields"] == [{"field": "input.prompt"}]


def test_deadline_cancels_the_prediction_on_the_server(
    fake, provider, ledger, media, source
) -> None:
    fake.script = Script(outcome="never")
    fake.honor_cancel_after = False  # our own deadline must hold even if the header is lost
    with pytest.raises(WorkflowError) as failure:
        provider(deadline_seconds=0.3).generate(request(source), media)
    assert failure.value.error_type == "timeout"
    [create], [cancel] = fake.creates, fake.cancels
    prediction_id = failure.value.details["prediction_id"]
    assert create.headers["cancel-after"] == "5s"
    assert cancel.path == f"/v1/predictions/{prediction_id}/cancel"
    assert fake.predictions[prediction_id].status == "canceled"
    assert ledger.read("j1", "edit").status == "canceled"


def test_auth_check_and_key_fingerprint(fake, provider, monkeypatch) -> None:
    good = provider()
    assert good.check_auth() is True
    monkeypatch.setenv("REPLICATE_API_TOKEN", "r8_replaced")
    bad = provider()
    assert bad.check_auth() is False
    assert good.credential_fingerprint() != bad.credential_fingerprint()
    assert "r8_" not in (good.credential_fingerprint() or "")
    assert [r.path for r in fake.recorded("GET", "/v1/account")] == ["/v1/account"] * 2
