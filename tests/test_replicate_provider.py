"""The Replicate provider, tested only through a fake Replicate API on a loopback port."""

from __future__ import annotations

import pytest

from resources.replicate_errors import DEFAULT_RETRY_AFTER
from tests.fakes import replicate_fixtures as fx
from tests.fakes.replicate_fixtures import intend, request, settled, submitted
from tests.fakes.replicate_server import THROTTLED, Fault, Script, closed_port
from tests.fakes.sample_media import MP4_SECONDS, png_bytes
from wf_core.errors import HardError, RetryableError, WorkflowError

# The shared fixtures, bound here so that they stay local to these modules.
fake, provider, provider_config = fx.fake, fx.provider, fx.provider_config
media, source, store = fx.media, fx.source, fx.store


def _hook_url() -> str:
    """A receiver address nobody listens on (what is sent matters here, not its delivery)."""
    return f"http://127.0.0.1:{closed_port()}/hooks/replicate"


def test_submit_asks_for_a_webhook_and_does_not_wait(fake, provider, store, media, source) -> None:
    fake.webhook_retries = 0
    hook = _hook_url()
    call, intent = intend(store, provider(), request(source), media)
    created = provider().submit(call, intent, hook)
    [create] = fake.creates
    assert create.path == "/v1/models/google/nano-banana/predictions"
    assert create.headers["authorization"] == f"Bearer {fake.token}"
    assert create.headers["content-type"] == "application/json"
    # The run must not be held by the create: no `Prefer: wait`.
    assert "prefer" not in create.headers and create.headers["cancel-after"] == "30s"
    assert create.body["webhook"] == f"{hook}?intent={intent.id}"
    assert create.body["webhook_events_filter"] == ["completed"]
    assert create.body["input"]["prompt"] == "a hat"
    assert create.body["input"]["image_input"][0].startswith("data:image/jpeg;base64,")
    assert create.body["input"] == call.provider_input
    assert created.id in fake.predictions and created.status == "starting"
    assert created.progress == 20 and created.output is None
    assert not fake.gets


def test_submit_without_a_webhook_url_asks_for_none(fake, provider, store, media, source) -> None:
    call, intent = intend(store, provider(), request(source), media)
    provider().submit(call, intent, None)
    [create] = fake.creates
    assert "webhook" not in create.body and "webhook_events_filter" not in create.body
    assert "prefer" not in create.headers


def test_prepare_digest_names_the_source_not_its_url(fake, provider, media, source) -> None:
    call = provider().prepare(request(source), media)
    again = provider().prepare(request(source), media)
    assert call.digest == again.digest and call.provider_model == "google/nano-banana"
    assert call.digest != provider().prepare(request(source, prompt="a cap"), media).digest


def test_fetch_maps_status_and_progress(fake, provider, store, media, source) -> None:
    replicate = provider()
    row = submitted(store, replicate, request(source), media)
    assert row.state == "parked" and row.provider_status == "starting"
    running = replicate.fetch(row)
    assert running is not None and running.id == row.prediction_id
    assert running.status == "processing" and running.progress is not None
    assert 25 <= running.progress < 90 and running.output is None
    done = replicate.fetch(row)
    assert done is not None and (done.status, done.progress) == ("succeeded", 100)
    assert done.output == [f"{fake.url}/files/{row.prediction_id}/output.png"]
    assert [g.path for g in fake.gets] == [f"/v1/predictions/{row.prediction_id}"] * 2


def test_collect_downloads_the_image(fake, provider, store, media, source) -> None:
    replicate = provider()
    row = settled(store, replicate, submitted(store, replicate, request(source), media))
    assert row.state == "completed" and row.completed_by == "poll" and row.progress == 100
    result = replicate.collect(row, request(source), media)
    assert result.data == png_bytes() and result.format == "png"
    assert result.provider == "replicate" and result.prediction_id == row.prediction_id
    assert result.provider_url == f"{fake.url}/files/{row.prediction_id}/output.png"
    # Output files live on another host in production: our token must not go there.
    assert [d.headers.get("authorization") for d in fake.downloads] == [None]


@pytest.mark.parametrize("model,duration", [("kling/v1.6", 5.0), ("minimax/video-01", MP4_SECONDS)])
def test_collect_downloads_the_video(fake, provider, store, media, source, model, duration) -> None:
    fake.script = Script(starting_polls=0, processing_polls=0)
    replicate = provider()
    asked = request(source, model, "image_to_video")
    row = settled(store, replicate, submitted(store, replicate, asked, media))
    result = replicate.collect(row, asked, media)
    assert result.format == "mp4" and result.data[4:8] == b"ftyp"
    assert result.extra == {"duration": pytest.approx(duration, abs=0.05)}


def test_fetch_of_a_prediction_replicate_does_not_know_is_none(
    fake, provider, store, media, source
) -> None:
    call, intent = intend(store, provider(), request(source), media)
    row = store.created(intent.id, "no-such-prediction", "starting", intent.created_at)
    assert provider().fetch(row) is None


def test_a_success_without_output_is_a_failure(fake, provider, store, media, source) -> None:
    replicate = provider()
    row = submitted(store, replicate, request(source), media)
    store.apply_provider_update({"id": row.prediction_id, "status": "succeeded"}, "webhook")
    row = store.get(row.id)
    assert row is not None
    with pytest.raises(HardError) as caught:
        replicate.collect(row, request(source), media)
    assert caught.value.error_type == "internal" and "no output" in caught.value.message
    assert not fake.downloads


def test_unknown_model_fails_before_any_call(fake, provider, media, source) -> None:
    with pytest.raises(WorkflowError) as failure:
        provider().prepare(request(source, model="no-such-model"), media)
    assert failure.value.error_type == "model_not_found" and not fake.requests


def _create_fault(status, body, **headers):
    return lambda fake, env: fake.fail_creates(1, Fault(status, body, headers))


def _env(name, value):
    return lambda fake, env: env.setenv(name, value() if callable(value) else value)


def _refused() -> str:
    return f"http://127.0.0.1:{closed_port()}/v1"


def _slow_create(fake, env) -> None:
    fake.hang_creates(2.0)


def _unknown_model(fake, env) -> None:
    fake.models.clear()


def row(name: str, setup, error_type: str, wait: float | None = None):
    return pytest.param(setup, error_type, wait, id=name)


TOO_MANY = {"title": "Request was throttled", "detail": THROTTLED, "status": 429}
FIELDS = {"invalid_fields": [{"field": "input.prompt"}], "detail": "- input.prompt: required"}
CREATE_REFUSALS = [
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
    row("read-timeout", _slow_create, "timeout"),
    row("404-model", _unknown_model, "model_not_found"),
    row("422", _create_fault(422, FIELDS), "invalid_input"),
]


@pytest.mark.parametrize("setup,error_type,wait", CREATE_REFUSALS)
def test_create_refusals_are_classified(
    fake, provider, monkeypatch, store, media, source, setup, error_type, wait
) -> None:
    setup(fake, monkeypatch)
    replicate = provider(request_timeout_seconds=0.5)
    call, intent = intend(store, replicate, request(source), media)
    with pytest.raises(WorkflowError) as failure:
        replicate.submit(call, intent, None)
    error = failure.value
    assert error.error_type == error_type
    assert error.details["provider"] == "replicate" and error.details["model"] == "nano-banana"
    if wait is not None:
        assert getattr(error, "retry_after", None) == pytest.approx(wait)
    if error_type == "invalid_input":
        assert error.details["invalid_fields"] == [{"field": "input.prompt"}]
    # Only a create that got no answer, or a 5xx, may have made a prediction: look for it.
    unanswered = error_type in ("timeout", "server_unavailable")
    assert replicate.create_may_have_arrived(error) is unanswered


def test_a_read_that_times_out_is_classified(fake, provider, store, media, source) -> None:
    replicate = provider(request_timeout_seconds=0.5)
    row = submitted(store, replicate, request(source), media)
    fake.fail_gets(1, Fault(200, b"{}", delay=1.0))
    with pytest.raises(RetryableError) as caught:
        replicate.fetch(row)
    assert caught.value.error_type == "timeout"


def _ends(outcome: str, error: str | None = None) -> Script:
    return Script(outcome=outcome, error=error)


NSFW = "NSFW content detected. Try running it again, or try a different prompt."
E005 = "The input or output was flagged as sensitive. Please try again. (E005)"
OUTCOMES = [
    pytest.param(_ends("aborted"), "aborted", "timeout", id="aborted"),
    pytest.param(_ends("canceled"), "canceled", "timeout", id="canceled"),
    pytest.param(_ends("failed", NSFW), "failed", "content_rejected", id="failed-nsfw"),
    pytest.param(_ends("failed", E005), "failed", "content_rejected", id="failed-E005"),
    pytest.param(
        _ends("failed", "CUDA out of memory"), "failed", "server_unavailable", id="failed-oom"
    ),
    pytest.param(_ends("failed", "Prediction timed out"), "failed", "timeout", id="failed-timeout"),
    pytest.param(
        _ends("failed", "image must be smaller"), "failed", "invalid_input", id="failed-input"
    ),
    pytest.param(_ends("failed", "KeyError: 'x'"), "failed", "internal", id="failed-other"),
]


@pytest.mark.parametrize("script,status,error_type", OUTCOMES)
def test_failed_predictions_are_classified(
    fake, provider, store, media, source, script, status, error_type
) -> None:
    fake.script = script
    replicate = provider()
    row = settled(store, replicate, submitted(store, replicate, request(source), media))
    assert row.state == "completed" and row.provider_status == status and not row.succeeded
    error = replicate.failure(row)
    assert error.error_type == error_type
    assert error.retryable is (error_type in ("timeout", "server_unavailable"))
    assert error.details == {
        "provider": "replicate",
        "model": "nano-banana",
        "prediction_id": row.prediction_id,
    }


def test_cancel_stops_the_prediction_on_the_server(fake, provider, store, media, source) -> None:
    fake.script = Script(outcome="never")
    replicate = provider(deadline_seconds=0.3)
    row = submitted(store, replicate, request(source), media)
    # Replicate refuses deadlines under 5 s: the header asks for 5 s at least.
    assert fake.creates[0].headers["cancel-after"] == "5s"
    replicate.cancel(row)
    [cancel] = fake.cancels
    assert cancel.path == f"/v1/predictions/{row.prediction_id}/cancel"
    assert fake.predictions[row.prediction_id].status == "canceled"
    row = settled(store, replicate, row)
    assert row.provider_status == "canceled" and replicate.failure(row).error_type == "timeout"


def test_cancel_of_an_unknown_prediction_does_not_raise(
    fake, provider, store, media, source
) -> None:
    call, intent = intend(store, provider(), request(source), media)
    row = store.created(intent.id, "no-such-prediction", "starting", intent.created_at)
    provider().cancel(row)
    assert [c.path for c in fake.cancels] == ["/v1/predictions/no-such-prediction/cancel"]


def test_auth_check_and_key_fingerprint(fake, provider, monkeypatch) -> None:
    good = provider()
    assert good.check_auth() is True
    monkeypatch.setenv("REPLICATE_API_TOKEN", "r8_replaced")
    bad = provider()
    assert bad.check_auth() is False
    assert good.credential_fingerprint() != bad.credential_fingerprint()
    assert "r8_" not in (good.credential_fingerprint() or "")
    assert [r.path for r in fake.recorded("GET", "/v1/account")] == ["/v1/account"] * 2
