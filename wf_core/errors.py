"""The error taxonomy shared by steps, providers, the retry sensor and the bridge."""

from __future__ import annotations

import math
import re
import time
from dataclasses import asdict, dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any, Literal, get_args

RetryableErrorType = Literal[
    "quota_exceeded", "rate_limit", "timeout", "invalid_key", "server_unavailable"
]
PermanentErrorType = Literal[
    "invalid_input",
    "file_too_large",
    "unsupported_type",
    "model_not_found",
    "content_rejected",
    "spec_changed",
    "internal",
]
ErrorType = Literal[RetryableErrorType, PermanentErrorType]
RETRYABLE_TYPES: frozenset[str] = frozenset(get_args(RetryableErrorType))
PERMANENT_TYPES: frozenset[str] = frozenset(get_args(PermanentErrorType))
ERROR_TYPES: frozenset[str] = RETRYABLE_TYPES | PERMANENT_TYPES
# What an unexpected error's text must not show a user: addresses, URLs and paths.
_REDACT = [
    (re.compile(r"\b[a-z][a-z0-9+.-]*://\S+", re.IGNORECASE), "<url>"),
    (
        re.compile(r"(?<![\w:])\[?(?:[0-9a-f]{0,4}:){2,7}[0-9a-f.]{0,15}\]?(?::\d+)?", re.I),
        "<address>",
    ),
    (re.compile(r"\bport \d+", re.IGNORECASE), "port <port>"),
    (re.compile(r"\bhost \"[^\"]*\"", re.IGNORECASE), "host <host>"),
    (re.compile(r"\b\d{1,3}(\.\d{1,3}){3}(:\d+)?\b"), "<address>"),
    (re.compile(r"\b(localhost|[a-z0-9-]+(\.[a-z0-9-]+)+):\d+\b", re.IGNORECASE), "<address>"),
    (re.compile(r"(?<![\w<])/(?:[\w.@%+-]+/)*[\w.@%+-]+"), "<path>"),
]
# Providers that give no header may say it in words: "Your rate limit resets in ~30s."
RESETS_IN = re.compile(r"resets in ~?\s*(\d+(?:\.\d+)?)\s*s", re.IGNORECASE)


class WorkflowError(Exception):
    """Base of every classified step failure."""

    retryable: bool = False

    def __init__(self, error_type: ErrorType, message: str, **details: Any) -> None:
        if error_type not in ERROR_TYPES:
            raise ValueError(f"unknown error_type {error_type!r}")
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.details = details


class RetryableError(WorkflowError):
    """A failure that may succeed later (quota, rate limit, timeout, key, 5xx)."""

    retryable = True

    def __init__(
        self,
        error_type: RetryableErrorType,
        message: str,
        retry_after: float | None = None,
        **details: Any,
    ) -> None:
        if error_type not in RETRYABLE_TYPES:
            raise ValueError(f"{error_type!r} is not a retryable error_type")
        super().__init__(error_type, message, **details)
        self.retry_after = retry_after


class HardError(WorkflowError):
    """A failure that will fail again however often it is tried."""

    def __init__(self, error_type: PermanentErrorType, message: str, **details: Any) -> None:
        if error_type not in PERMANENT_TYPES:
            raise ValueError(f"{error_type!r} is not a permanent error_type")
        super().__init__(error_type, message, **details)


@dataclass(frozen=True)
class FailureRecord:
    """The structured record of a step failure, as stored in metadata and tags."""

    step: str
    step_index: int
    error_type: ErrorType
    retryable: bool
    message: str
    retry_after: float | None = None
    provider: str | None = None
    model: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The record as a plain JSON-ready dict."""
        return asdict(self)


def classify(exc: BaseException, step: str, step_index: int) -> FailureRecord:
    """Turn any exception raised by a step into its failure record."""
    if isinstance(exc, WorkflowError):
        return FailureRecord(
            step=step,
            step_index=step_index,
            error_type=exc.error_type,
            retryable=exc.retryable,
            message=exc.message,
            retry_after=getattr(exc, "retry_after", None),
            provider=exc.details.get("provider"),
            model=exc.details.get("model"),
        )
    return FailureRecord(
        step=step,
        step_index=step_index,
        error_type="internal",
        retryable=False,
        message=f"{type(exc).__name__}: {redact(str(exc))}",
    )


def redact(text: str) -> str:
    """`text` without the addresses, URLs and paths an internal error may carry (the
    run's log keeps the original)."""
    for pattern, replacement in _REDACT:
        text = pattern.sub(replacement, text)
    return text[:500]


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds a Retry-After value (delta seconds, HTTP date) or "resets in ~Ns" asks; else None."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        found = RESETS_IN.search(value)
        return float(found.group(1)) if found else None
    # An HTTP date is GMT, though "-0000" parses as naive; `now` (epoch seconds) is the clock.
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
