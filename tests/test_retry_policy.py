"""The retry policy is one rule: the time the bridge shows is the time the sensor retries."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from wf_core import tags as t
from wf_core.circuit_breaker import BreakerBoard
from wf_core.job_state import RunView, derive_job_state
from wf_core.retry_policy import RetrySettings, decide, next_retry_at

FAILED_AT = 1_790_000_000.0


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


SETTINGS = RetrySettings(backoff_base=4.0, backoff_cap=64.0, rate_limit_default=30.0)


def _failed(error_type: str, model: str, **extra: str) -> RunView:
    tags = {
        **t.job_tags("img-edit-to-video", "job", "user", "bridge"),
        t.ERROR_TYPE: error_type,
        t.RETRYABLE: "true",
        t.FAILED_STEP: "video_generation",
        t.FAILED_AT: _iso(FAILED_AT),
        t.MODEL: model,
        **extra,
    }
    return RunView("run-1", "FAILURE", tags, FAILED_AT)


@pytest.mark.parametrize(
    ("error_type", "model", "extra", "expected"),
    [
        # A fallback model exists: the sensor retries at once, and the bridge says so.
        ("rate_limit", "minimax/video-01", {t.RETRY_AT: _iso(FAILED_AT + 80)}, 0.0),
        ("quota_exceeded", "minimax/video-01", {}, 0.0),
        # The last model of the chain: the rate limit's own reset time.
        ("rate_limit", "kling/v1.6", {t.RETRY_AT: _iso(FAILED_AT + 80)}, 80.0),
        ("rate_limit", "kling/v1.6", {}, 30.0),
        ("quota_exceeded", "kling/v1.6", {}, None),
        ("invalid_key", "kling/v1.6", {}, None),
    ],
)
def test_the_time_shown_is_the_time_the_sensor_retries(
    specs, error_type, model, extra, expected
) -> None:
    spec = specs["img-edit-to-video"]
    run = _failed(error_type, model, **extra)
    state = derive_job_state(spec, [run], {"upload", "image_edit"})
    assert state.status == "pending_retry"
    shown = next_retry_at(spec, state, SETTINGS)
    if expected is None:
        assert shown is None
        return
    assert shown == pytest.approx(FAILED_AT + expected)
    board = BreakerBoard.from_dict({})
    before = decide(spec, state, run, shown - 0.001, board, SETTINGS, False, False)
    at = decide(spec, state, run, shown, board, SETTINGS, False, False)
    assert at.launch and (expected == 0.0 or not before.launch)


def test_backoff_time_is_the_sensors(specs) -> None:
    spec = specs["img-edit-to-video"]
    run = _failed("server_unavailable", "kling/v1.6")
    state = derive_job_state(spec, [run], {"upload", "image_edit"})
    shown = next_retry_at(spec, state, SETTINGS)
    assert FAILED_AT <= shown <= FAILED_AT + SETTINGS.backoff_base
    board = BreakerBoard.from_dict({})
    assert not decide(spec, state, run, shown - 0.001, board, SETTINGS, False, False).launch
    assert decide(spec, state, run, shown, board, SETTINGS, False, False).launch
