"""API errors: every failure answers `{"error": {"code", "message"}}` with a fitting status."""

from __future__ import annotations

import redis
import sqlalchemy.exc as sa_exc
from flask import Flask, jsonify
from limits.errors import StorageError
from werkzeug.exceptions import HTTPException

from bridge_api.dagster_client.errors import DagsterError, DagsterUnavailable


class ApiError(Exception):
    """An error the API reports to its caller (never a stack trace)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
        **extra: object,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.extra = extra

    def body(self) -> dict:
        """The JSON body."""
        return {"error": {"code": self.code, "message": self.message, **self.extra}}


def register_error_handlers(app: Flask) -> None:
    """JSON for our errors, for Werkzeug's HTTP errors and for anything unexpected."""

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return jsonify(exc.body()), exc.status, exc.headers

    @app.errorhandler(DagsterError)
    def _orchestrator_error(exc: DagsterError):
        answer = orchestrator_answer(exc)
        return jsonify(answer.body()), answer.status, answer.headers

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        code = (exc.name or "error").lower().replace(" ", "_")
        if exc.code == 413:
            code = "file_too_large"
        if exc.code == 429:
            code = "rate_limited"  # Flask-Limiter's own 429s are answered in limits.py
        body = {"error": {"code": code, "message": exc.description or exc.name}}
        # Keep the error's own headers (a 405's `Allow`), not its HTML content type.
        headers = [(k, v) for k, v in exc.get_headers() if k.lower() != "content-type"]
        return jsonify(body), exc.code or 500, headers

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        outage = dependency_outage(exc)
        if outage is not None:
            # A dependency is down: retryable, and nothing in the answer names where it is.
            app.logger.error("dependency unavailable: %s: %s", type(exc).__name__, exc)
            return jsonify(outage.body()), outage.status, outage.headers
        app.logger.exception("unhandled error")
        body = {"error": {"code": "internal", "message": "Internal server error"}}
        return jsonify(body), 500


def orchestrator_answer(exc: DagsterError) -> ApiError:
    """What the API answers for a failure of the Dagster client: 503 (retry shortly) when
    Dagster is unreachable, 502 when it refused the request."""
    if isinstance(exc, DagsterUnavailable):
        return ApiError(503, "orchestrator_unavailable", exc.message, headers={"Retry-After": "5"})
    return ApiError(502, "orchestrator_error", exc.message)


def dependency_outage(exc: BaseException) -> ApiError | None:
    """The 503 an outage of one of the bridge's dependencies answers, or None."""
    if isinstance(exc, redis.RedisError | StorageError):
        what = "The rate limiter's store"
    elif isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError):
        what = "The state database"
    else:
        return None
    return ApiError(
        503,
        "dependency_unavailable",
        f"{what} is unavailable; nothing was done. Try again shortly.",
        headers={"Retry-After": "5"},
    )
