"""The bridge's logs as JSON lines (LOG_FORMAT=json, the default): each line of a request
carries its method, path (never the query string: it may hold `access_token`), user and
job id, and one access line per request gives its status and duration."""

from __future__ import annotations

import logging
import time

from flask import Flask, Response, g, has_request_context, request

from wf_core.logging_json import install_json_logging

access_log = logging.getLogger("bridge_api.access")


class RequestContext(logging.Filter):
    """Adds the current request's method, path, user and job id to a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Always keeps the record; only adds fields."""
        if has_request_context():
            record.method = getattr(record, "method", None) or request.method
            record.path = getattr(record, "path", None) or request.path
            record.user = getattr(record, "user", None) or g.get("user_id")
            job_id = (request.view_args or {}).get("job_id")
            record.job_id = getattr(record, "job_id", None) or job_id
        return True


def init_logging(app: Flask) -> None:
    """JSON lines on stderr with request context, and an access line per request."""
    if str(app.config.get("LOG_FORMAT") or "json").lower() != "json":
        return
    handler = install_json_logging()
    if not any(isinstance(f, RequestContext) for f in handler.filters):
        handler.addFilter(RequestContext())

    @app.before_request
    def _started() -> None:
        g.log_started = time.perf_counter()

    @app.after_request
    def _access(response: Response) -> Response:
        took = time.perf_counter() - g.get("log_started", time.perf_counter())
        access_log.info(
            "%s %s %s %.1f ms",
            request.method,
            request.path,
            response.status_code,
            took * 1000,
            extra={"status": response.status_code},
        )
        return response
