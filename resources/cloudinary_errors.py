"""How Cloudinary failures read in our error taxonomy, whether from the SDK or a delivery URL."""

from __future__ import annotations

import re

import httpx
import urllib3.exceptions
from cloudinary import exceptions as cld

from wf_core.errors import HardError, RetryableError, WorkflowError, parse_retry_after

PROVIDER = "cloudinary"

# The SDK reports a non-JSON answer (a proxy's 413 or 502 page) only in its message.
_UNPARSED_STATUS = re.compile(r"Error parsing server response \((\d{3})\)")


def from_status(status: int, message: str, retry_after: float | None = None) -> WorkflowError:
    """The error for an HTTP status answered by Cloudinary (or a proxy in front of it)."""
    if status in (420, 429):
        return RetryableError("rate_limit", message, retry_after, provider=PROVIDER)
    if status in (401, 403):
        return RetryableError("invalid_key", message, provider=PROVIDER)
    if status in (408, 504):
        return RetryableError("timeout", message, provider=PROVIDER)
    if status == 413:
        return HardError("file_too_large", message, provider=PROVIDER)
    if status == 415:
        return HardError("unsupported_type", message, provider=PROVIDER)
    if 400 <= status < 500:
        return HardError("invalid_input", message, provider=PROVIDER)
    return RetryableError("server_unavailable", message, retry_after, provider=PROVIDER)


def from_sdk_error(exc: cld.Error) -> WorkflowError:
    """The error for an exception raised by the Cloudinary SDK's Upload API call."""
    message = f"Cloudinary: {exc}"
    # The SDK drops the response headers when it raises, so no Retry-After is readable here.
    if isinstance(exc, cld.RateLimited):
        return RetryableError("rate_limit", message, provider=PROVIDER)
    if isinstance(exc, cld.AuthorizationRequired | cld.NotAllowed):
        return RetryableError("invalid_key", message, provider=PROVIDER)
    if isinstance(exc, cld.NotFound):
        # On the upload endpoint a 404 means an unknown cloud or a wrong upload_prefix.
        return RetryableError("invalid_key", message, provider=PROVIDER)
    if isinstance(exc, cld.BadRequest):
        if "file size too large" in str(exc).lower():
            return HardError("file_too_large", message, provider=PROVIDER)
        return HardError("invalid_input", message, provider=PROVIDER)
    if isinstance(exc, cld.GeneralError | cld.AlreadyExists):
        return RetryableError("server_unavailable", message, provider=PROVIDER)
    if _timed_out(exc):
        return RetryableError("timeout", message, provider=PROVIDER)
    unparsed = _UNPARSED_STATUS.search(str(exc))
    if unparsed:
        return from_status(int(unparsed.group(1)), message)
    # Connection refused or reset, an unmapped 5xx: the service is not answering properly.
    return RetryableError("server_unavailable", message, provider=PROVIDER)


def from_httpx_error(exc: httpx.HTTPError, url: str) -> WorkflowError:
    """The error for a failed request to a delivery URL."""
    if isinstance(exc, httpx.TimeoutException):
        return RetryableError("timeout", f"Cloudinary: {url} timed out", provider=PROVIDER)
    return RetryableError(
        "server_unavailable", f"Cloudinary: {url} unreachable: {exc}", provider=PROVIDER
    )


def from_response(response: httpx.Response) -> WorkflowError:
    """The error for a delivery URL that answered with a failure status."""
    reason = response.headers.get("x-cld-error") or response.reason_phrase
    message = f"Cloudinary: HTTP {response.status_code} for {response.url}: {reason}"
    if response.status_code == 404:
        return HardError("invalid_input", message, provider=PROVIDER)
    return from_status(
        response.status_code, message, parse_retry_after(response.headers.get("retry-after"))
    )


def _timed_out(exc: BaseException) -> bool:
    """Whether the SDK error wraps a urllib3 timeout (the SDK re-raises inside `except`)."""
    seen: BaseException | None = exc.__context__ or exc.__cause__
    while seen is not None:
        if isinstance(seen, urllib3.exceptions.MaxRetryError) and seen.reason is not None:
            seen = seen.reason
        # urllib3 makes a refused connection a subclass of ConnectTimeoutError.
        if isinstance(seen, urllib3.exceptions.NewConnectionError):
            return False
        if isinstance(seen, urllib3.exceptions.TimeoutError):
            return True
        seen = seen.__context__ or seen.__cause__
    return False
