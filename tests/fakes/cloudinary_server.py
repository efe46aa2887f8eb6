"""A loopback fake of Cloudinary's Upload API and delivery URLs, for tests through the real SDK.

Point the SDK at it with `upload_prefix=fake.base_url`. It checks the request signature
as Cloudinary documents it, keeps uploads in memory (`FakeAccount`), answers the documented
upload response, serves the files back at the URLs it returned, records every request, and
fails the next requests on demand (`fail_next`).
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.fakes.cloudinary_account import Asset, FakeAccount, error_body

CONTENT_TYPES = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp", "mp4": "video/mp4"}
UPLOAD = re.compile(r"^/v1_1/(?P<cloud>[^/]+)/(?P<rt>image|video|raw|auto)/upload$")
DELIVERY = re.compile(r"^/(?P<cloud>[^/]+)/(?P<rt>image|video)/upload/(?:v\d+/)?(?P<id>.+)\.\w+$")


@dataclass(frozen=True)
class Fault:
    """What the next matching request answers instead of the real thing."""

    status: int
    message: str
    body: bytes | None = None
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Recorded:
    """One request the fake received and what it answered."""

    method: str
    path: str
    fields: dict[str, str]
    file_size: int | None
    status: int = 0
    response: dict[str, Any] | None = None


class FakeCloudinary:
    """A fake account and its HTTP server on 127.0.0.1; use it as a context manager."""

    def __init__(
        self,
        cloud_name: str = "fake-cloud",
        api_key: str = "1234567890",
        api_secret: str = "fake-secret",
    ) -> None:
        self.requests: list[Recorded] = []
        self._faults: dict[str, list[Fault]] = {"upload": [], "delivery": []}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self.account = FakeAccount(cloud_name, api_key, api_secret, self.base_url)
        # A short poll interval keeps shutdown (once per test) quick.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        """The `upload_prefix` that points the SDK here."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def cloud_name(self) -> str:
        """The fake account's cloud name."""
        return self.account.cloud_name

    @property
    def assets(self) -> dict[tuple[str, str], Asset]:
        """Stored files by (resource_type, public_id)."""
        return self.account.assets

    def account_url(self, api_secret: str | None = None) -> str:
        """A CLOUDINARY_URL for this account (optionally with another secret)."""
        account = self.account
        return (
            f"cloudinary://{account.api_key}:{api_secret or account.api_secret}@{self.cloud_name}"
        )

    def delete(self, resource_type: str, public_id: str) -> None:
        """Remove a stored file, as if deleted in the console."""
        self.account.delete(resource_type, public_id)

    def fail_next(
        self,
        status: int,
        message: str = "fault",
        count: int = 1,
        *,
        on: str = "upload",
        body: bytes | None = None,
        delay: float = 0.0,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Make the next `count` upload (or `on="delivery"`) requests answer `status`.

        The answer is Cloudinary's JSON error with `message`, or `body` verbatim (a proxy's
        page), after `delay` seconds.
        """
        fault = Fault(status, message, body, delay, headers or {})
        with self._lock:
            self._faults[on].extend([fault] * count)

    def take_fault(self, kind: str) -> Fault | None:
        """The fault the next `kind` request answers, if one is scheduled."""
        with self._lock:
            return self._faults[kind].pop(0) if self._faults[kind] else None

    def uploads(self) -> list[Recorded]:
        """The upload requests received so far."""
        return [r for r in self.requests if r.method == "POST"]

    def __enter__(self) -> FakeCloudinary:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def parse_multipart(content_type: str, body: bytes) -> tuple[dict[str, str], str, bytes]:
    """(fields, file name, file bytes) of a multipart/form-data body, byte-exact."""
    header = Message()
    header["content-type"] = content_type
    boundary = str(header.get_param("boundary")).encode()
    fields: dict[str, str] = {}
    filename, data = "", b""
    for part in body.split(b"--" + boundary)[1:-1]:
        head, _, content = part[2:].partition(b"\r\n\r\n")
        headers = Message()
        for line in head.decode().split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip()] = value.strip()
        name = str(headers.get_param("name", header="content-disposition"))
        content = content[:-2]  # the CRLF before the next boundary
        if name == "file":
            filename = str(headers.get_param("filename", "file", "content-disposition"))
            data = content
        else:
            fields[name] = content.decode()
    return fields, filename, data


def _handler_for(fake: FakeCloudinary) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            fields, filename, data = parse_multipart(self.headers.get("content-type", ""), body)
            record = Recorded("POST", self.path, fields, len(data))
            fake.requests.append(record)
            route = UPLOAD.match(self.path)
            if route is None or route["cloud"] != fake.cloud_name:
                self._json(record, 404, error_body(f"Invalid cloud_name {self.path}"))
            elif fault := fake.take_fault("upload"):
                self._fault(record, fault)
            else:
                self._json(record, *fake.account.upload(route["rt"], fields, data, filename))

        def do_GET(self) -> None:
            self._deliver()

        def do_HEAD(self) -> None:
            self._deliver()

        def _deliver(self) -> None:
            record = Recorded(self.command, self.path, {}, None)
            fake.requests.append(record)
            if fault := fake.take_fault("delivery"):
                self._fault(record, fault)
                return
            route = DELIVERY.match(self.path)
            asset = None
            if route and route["cloud"] == fake.cloud_name:
                asset = fake.account.find(route["rt"], route["id"])
            if asset is None:
                record.status = 404
                self._send(404, b"", "text/plain", {"X-Cld-Error": "Resource not found"})
                return
            record.status = 200
            self._send(200, asset.data, CONTENT_TYPES[asset.format], {})

        def _fault(self, record: Recorded, fault: Fault) -> None:
            time.sleep(fault.delay)
            if fault.body is None:
                self._json(record, fault.status, error_body(fault.message), fault.headers)
                return
            record.status = fault.status
            self._send(fault.status, fault.body, "text/html", fault.headers)

        def _json(
            self,
            record: Recorded,
            status: int,
            answer: dict[str, Any],
            headers: dict[str, str] | None = None,
        ) -> None:
            record.status, record.response = status, answer
            self._send(status, json.dumps(answer).encode(), "application/json", headers or {})

        def _send(
            self, status: int, body: bytes, content_type: str, headers: dict[str, str]
        ) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test); nothing to answer

    return Handler
