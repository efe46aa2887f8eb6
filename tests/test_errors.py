"""The error taxonomy: retryable and permanent words, and classification of any exception."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from wf_core.errors import (
    PERMANENT_TYPES,
    RETRYABLE_TYPES,
    HardError,
    RetryableError,
    classify,
    parse_retry_after,
)

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC).timestamp()


def test_taxonomy_is_api_md_plus_spec_changed() -> None:
    assert RETRYABLE_TYPES == {
        "quota_exceeded",
        "rate_limit",
        "timeout",
        "invalid_key",
        "server_unavailable",
    }
    assert PERMANENT_TYPES == {
        "invalid_input",
        "file_too_large",
        "unsupported_type",
        "model_not_found",
        "content_rejected",
        "internal",
        # Not in API.md: a job whose workflow changed under it and cannot continue
        # (README, "Changing workflows on a running system").
        "spec_changed",
    }


def test_classes_refuse_the_wrong_kind_of_error() -> None:
    with pytest.raises(ValueError):
        RetryableError("content_rejected", "x")
    with pytest.raises(ValueError):
        HardError("rate_limit", "x")


def test_classify() -> None:
    record = classify(
        RetryableError("rate_limit", "slow down", 7, provider="replicate", model="kling/v1.6"),
        "video",
        2,
    )
    assert record.as_dict() == {
        "step": "video",
        "step_index": 2,
        "error_type": "rate_limit",
        "retryable": True,
        "message": "slow down",
        "retry_after": 7,
        "provider": "replicate",
        "model": "kling/v1.6",
    }
    other = classify(KeyError("boom"), "video", 2)
    assert other.error_type == "internal" and not other.retryable
    assert "KeyError" in other.message


@pytest.mark.parametrize(
    "value,seconds",
    [
        ("7", 7.0),
        (" 2.5 ", 2.5),
        ("-3", 0.0),
        ("Sat, 01 Mar 2025 12:01:30 GMT", 90.0),
        ("Sat, 01 Mar 2025 12:01:30 -0000", 90.0),
        ("Sat, 01 Mar 2025 11:59:00 GMT", 0.0),
        ("Request was throttled. Your rate limit resets in ~30s.", 30.0),
        ("resets in 1.5 s", 1.5),
        (None, None),
        ("", None),
        ("soon", None),
        ("inf", None),
        ("nan", None),
    ],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == seconds
