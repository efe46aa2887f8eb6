"""Replicate's answers turned into our error taxonomy: one place decides every error_type."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import httpx

from wf_core.errors import HardError, RetryableError, WorkflowError, parse_retry_after

PROVIDER = "replicate"
DEFAULT_RETRY_AFTER = 10.0
SERVER_ERRORS = frozenset({500, 502, 503, 504})
# Replicate's safety checker says "flagged as sensitive (E005)"; models say "NSFW".
SAFETY = re.compile(r"nsfw|safety|sensitive|flagged|content polic|moderat|\(E005\)", re.I)
# Failures that say nothing about the input: the same prediction may well succeed later.
TRANSIENT = re.compile(
    r"interrupted|out of memory|cuda|please retry|try again later|unavailable|\(E6716\)", re.I
)
TIMED_OUT = re.compile(r"timed out|timeout|deadline", re.I)
INPUT = re.compile(r"invalid|must be|validation|not supported|unsupported|too (large|long)", re.I)


def problem(body: bytes) -> dict[str, Any]:
    """The problem+json fields of an error body; {} for anything that is not a JSON object."""
    try:
        parsed = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def retry_after(
    headers: Mapping[str, str],
    text: str,
    default: float = DEFAULT_RETRY_AFTER,
    now: float | None = None,
) -> float:
    """Seconds to wait: the Retry-After header, else "resets in ~Ns" in the text, else default."""
    header = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    for value in (header, text):
        seconds = parse_retry_after(value, now)
        if seconds is not None:
            return seconds
    return default


def error_from_response(
    status: int, headers: Mapping[str, str], body: bytes, model: str
) -> WorkflowError:
    """The error for an HTTP error answer from the Replicate API."""
    fields = problem(body)
    text = str(fields.get("detail") or fields.get("title") or body[:300].decode("utf-8", "replace"))
    message = f"Replicate {status} for {model}: {text.strip() or 'no detail'}"
    details: dict[str, Any] = {"provider": PROVIDER, "model": model, "status": status}
    if status in (401, 403):
        return RetryableError("invalid_key", message, None, **details)
    if status == 402:
        return RetryableError("quota_exceeded", message, None, **details)
    if status == 429:
        return RetryableError("rate_limit", message, retry_after(headers, text), **details)
    if status in SERVER_ERRORS or status >= 500:
        return RetryableError("server_unavailable", message, None, **details)
    if status == 404:
        return HardError("model_not_found", message, **details)
    if status == 413:
        return HardError("file_too_large", message, **details)
    if status == 422:
        return HardError(
            "invalid_input", message, invalid_fields=fields.get("invalid_fields") or [], **details
        )
    if 400 <= status < 500:
        return HardError("invalid_input", message, **details)
    return HardError("internal", message, **details)


def error_from_prediction(prediction: Mapping[str, Any], model: str) -> WorkflowError:
    """The error for a prediction that ended failed, canceled or aborted."""
    status = prediction.get("status")
    error = str(prediction.get("error") or "").strip()
    details = {"provider": PROVIDER, "model": model, "prediction_id": prediction.get("id")}
    if status in ("aborted", "canceled"):
        # Aborted: our deadline passed before it started. Canceled: by deadline or by hand.
        message = f"prediction {prediction.get('id')} for {model} was {status}"
        return RetryableError("timeout", message, None, **details)
    message = f"{model} failed: {error or 'no error message'}"
    if SAFETY.search(error):
        return HardError("content_rejected", message, **details)
    if TIMED_OUT.search(error):
        return RetryableError("timeout", message, None, **details)
    if TRANSIENT.search(error):
        return RetryableError("server_unavailable", message, None, **details)
    if INPUT.search(error):
        return HardError("invalid_input", message, **details)
    # Unrecognised model failures are usually the input's fault: do not pay again blindly.
    return HardError("internal", message, **details)


def error_from_transport(exc: httpx.TransportError, model: str) -> RetryableError:
    """The error for a request that got no answer: our timeout, or no connection."""
    details = {"provider": PROVIDER, "model": model}
    if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
        message = f"Replicate did not answer in time: {type(exc).__name__}: {exc}"
        return RetryableError("timeout", message, None, **details)
    message = f"cannot reach Replicate: {type(exc).__name__}: {exc}"
    return RetryableError("server_unavailable", message, None, **details)


def deadline_error(prediction_id: str, model: str, seconds: float) -> RetryableError:
    """The error for a prediction we gave up on after `seconds`."""
    message = f"prediction {prediction_id} for {model} did not finish within {seconds:g}s"
    return RetryableError(
        "timeout", message, None, provider=PROVIDER, model=model, prediction_id=prediction_id
    )
