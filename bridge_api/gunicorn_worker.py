"""gunicorn's workers, answering the errors gunicorn raises itself as JSON.

gunicorn refuses a request it cannot parse (a too long request line or header, a malformed
request) before the app sees it, with an HTML page; API.md promises JSON for every error.

`JsonErrorGeventWorker` is the production worker: an SSE stream is a greenlet, not a
thread, so a thousand open streams cost memory, not the threads that every other route
needs. PostgreSQL's driver (psycopg2, C code) is made cooperative with psycogreen, so a
database read yields like a socket read does.
"""

from __future__ import annotations

import json
from datetime import datetime
from http import HTTPStatus
from ssl import SSLError
from typing import Any

from gunicorn import util
from gunicorn.http import errors as http_errors
from gunicorn.http.wsgi import Response, default_environ
from gunicorn.workers.ggevent import GeventWorker
from gunicorn.workers.gthread import ThreadWorker

# The app's fault, not the client's, although they are parse errors.
SERVER_FAULTS = (http_errors.InvalidResponseHeader, http_errors.InvalidResponseHeaderName)
# Exception, then (status, code, message); the first match wins, any other parse error is 400.
CLIENT_FAULTS: tuple[tuple[type[Exception], int, str, str], ...] = (
    (http_errors.LimitRequestLine, 414, "uri_too_long", "The request line (URL) is too long."),
    (
        http_errors.LimitRequestHeaders,
        431,
        "headers_too_large",
        "The request's headers are too large or too many.",
    ),
    (http_errors.ExpectationFailed, 417, "expectation_failed", "Only 100-continue is expected."),
    (
        http_errors.UnsupportedTransferCoding,
        501,
        "unsupported_transfer_coding",
        "The request's transfer coding is not supported.",
    ),
    (http_errors.ForbiddenProxyRequest, 403, "forbidden", "Proxy requests are not allowed."),
    (SSLError, 403, "forbidden", "The TLS handshake failed."),
)


def describe(exc: BaseException) -> tuple[int, str, str]:
    """(status, code, message) of an error gunicorn hit while reading or answering a request."""
    if isinstance(exc, SERVER_FAULTS) or isinstance(exc, http_errors.ConfigurationProblem):
        return 500, "internal", "Internal server error"
    for kind, status, code, message in CLIENT_FAULTS:
        if isinstance(exc, kind):
            return status, code, message
    if isinstance(exc, http_errors.ParseException):
        return 400, "bad_request", f"The request is malformed: {exc}"
    return 500, "internal", "Internal server error"


def json_error(status: int, code: str, message: str) -> bytes:
    """A complete HTTP/1.1 answer with API.md's error body; the connection closes after it."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/json\r\n"
        "X-Content-Type-Options: nosniff\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


class JsonErrors:
    """gunicorn's own error answers in JSON instead of HTML (mixed into a worker class)."""

    cfg: Any
    log: Any

    def handle_error(self, req, client, addr, exc) -> None:
        """Log as gunicorn does, then answer `{"error": {"code", "message"}}`."""
        started = datetime.now()
        addr = addr or ("", -1)  # a unix socket
        status, code, message = describe(exc)
        if status < 500:
            self.log.warning("Invalid request from ip=%s: %s", addr[0], exc)
        else:
            self.log.exception("Error handling request %s", getattr(req, "uri", "(no URI read)"))
        answer = json_error(status, code, message)
        if req is not None:
            environ = default_environ(req, client, self.cfg)
            environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = addr[0], str(addr[1])
            response = Response(req, client, self.cfg)
            response.status = f"{status} {HTTPStatus(status).phrase}"
            response.response_length = len(answer)
            self.log.access(response, req, environ, datetime.now() - started)
        try:
            util.write_nonblock(client, answer)
        except Exception:
            self.log.debug("Failed to send error message.")


class JsonErrorThreadWorker(JsonErrors, ThreadWorker):
    """The gthread worker (a thread per connection), with JSON errors."""


class JsonErrorGeventWorker(JsonErrors, GeventWorker):
    """The gevent worker (a greenlet per connection), with JSON errors and a cooperative
    psycopg2."""

    def patch(self) -> None:
        """gevent's monkey-patching, then psycopg2's wait callback."""
        super().patch()
        from psycogreen.gevent import patch_psycopg

        patch_psycopg()
