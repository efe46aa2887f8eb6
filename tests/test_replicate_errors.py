"""The Replicate classifier: every provider answer maps to one of our error_type words."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from resources.replicate_errors import (
    DEFAULT_RETRY_AFTER,
    error_from_prediction,
    error_from_response,
    error_from_transport,
    problem,
    retry_after,
)
from wf_core.errors import RetryableError


def _problem(status: int, detail: str, **more) -> bytes:
    return json.dumps({"title": "t", "detail": detail, "status": status, **more}).encode()


@pytest.mark.parametrize(
    "status,body,headers,error_type,wait",
    [
        (
            401,
            _problem(401, "You did not pass a valid authentication token"),
            {},
            "invalid_key",
            None,
        ),
        (402, _problem(402, "You have insufficient credit"), {}, "quota_exceeded", None),
        (429, _problem(429, "Request was throttled."), {"Retry-After": "7"}, "rate_limit", 7.0),
        (
            429,
            _problem(429, "Request was throttled. Your rate limit resets in ~30s."),
            {},
            "rate_limit",
            30.0,
        ),
        (429, b"<html>slow down</html>", {}, "rate_limit", DEFAULT_RETRY_AFTER),
        (500, _problem(500, "boom"), {}, "server_unavailable", None),
        (502, b"<html>Bad Gateway</html>", {}, "server_unavailable", None),
        (503, b"", {}, "server_unavailable", None),
        (504, b"\xff\xfe not utf-8", {}, "server_unavailable", None),
        (404, _problem(404, "Model not found"), {}, "model_not_found", None),
        (422, _problem(422, "- input.prompt: required"), {}, "invalid_input", None),
        (400, b"[1, 2]", {}, "invalid_input", None),
    ],
)
def test_http_answers(status, body, headers, error_type, wait) -> None:
    error = error_from_response(status, headers, body, "nano-banana")
    assert error.error_type == error_type
    assert error.details["provider"] == "replicate" and error.details["model"] == "nano-banana"
    if wait is not None:
        assert isinstance(error, RetryableError) and error.retry_after == pytest.approx(wait)


def test_422_keeps_invalid_fields() -> None:
    fields = [{"type": "required", "field": "input.prompt", "description": "prompt is required"}]
    error = error_from_response(422, {}, _problem(422, "bad", invalid_fields=fields), "m")
    assert error.details["invalid_fields"] == fields
    assert "bad" in error.message


def test_problem_never_raises() -> None:
    assert problem(b"not json") == {}
    assert problem(b'"a string"') == {}
    assert problem(b"\xff") == {}
    assert problem(_problem(429, "x"))["detail"] == "x"


def test_retry_after_order() -> None:
    now = datetime(2025, 3, 1, 12, tzinfo=UTC)
    soon = format_datetime(now + timedelta(seconds=60), usegmt=True)
    assert retry_after({"retry-after": soon}, "resets in ~12s", now=now.timestamp()) == 60
    assert retry_after({"Retry-After": "junk"}, "resets in ~12s") == 12.0
    assert retry_after({}, "nothing here", default=3) == 3


@pytest.mark.parametrize(
    "prediction,error_type",
    [
        ({"status": "failed", "error": "NSFW content detected"}, "content_rejected"),
        (
            {"status": "failed", "error": "The input or output was flagged as sensitive. (E005)"},
            "content_rejected",
        ),
        ({"status": "failed", "error": "CUDA out of memory"}, "server_unavailable"),
        ({"status": "failed", "error": "Prediction timed out"}, "timeout"),
        ({"status": "failed", "error": "image must be at least 300px"}, "invalid_input"),
        ({"status": "failed", "error": "Something odd"}, "internal"),
        ({"status": "failed", "error": None}, "internal"),
        ({"status": "aborted"}, "timeout"),
        ({"status": "canceled"}, "timeout"),
    ],
)
def test_ended_predictions(prediction, error_type) -> None:
    error = error_from_prediction({"id": "p1", **prediction}, "kling/v1.6")
    assert error.error_type == error_type
    assert error.details["prediction_id"] == "p1" and error.details["model"] == "kling/v1.6"


@pytest.mark.parametrize(
    "exc,error_type",
    [
        (httpx.ConnectError("refused"), "server_unavailable"),
        (httpx.ConnectTimeout("slow connect"), "server_unavailable"),
        (httpx.ReadTimeout("slow answer"), "timeout"),
        (httpx.RemoteProtocolError("hung up"), "server_unavailable"),
    ],
)
def test_transport_errors(exc, error_type) -> None:
    assert error_from_transport(exc, "m").error_type == error_type
