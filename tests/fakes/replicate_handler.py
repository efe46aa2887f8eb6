"""The HTTP side of the fake Replicate: routing, auth, problem+json errors, request records."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.fakes.replicate_server import FakeReplicate

CREATE = re.compile(r"^/v1/(?:models/(?P<owner>[^/]+)/(?P<name>[^/]+)/)?predictions$")
PREDICTION = re.compile(r"^/v1/predictions/(?P<id>[^/]+)(?P<cancel>/cancel)?$")


@dataclass
class Fault:
    """One scripted HTTP answer: status, body (dict for problem+json, else raw), headers."""

    status: int
    body: dict | str | bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Recorded:
    """One request the fake received."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


def problem(status: int, title: str, detail: str, **more: Any) -> tuple[int, dict]:
    """A problem+json answer as Replicate writes them."""
    return status, {"title": title, "detail": detail, "status": status, **more}


def make_handler(fake: FakeReplicate) -> type[BaseHTTPRequestHandler]:
    """A request handler class bound to one fake."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # the records are the log

        def do_GET(self) -> None:  # noqa: N802
            self._serve("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._serve("POST")

        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw
            headers = {k.lower(): v for k, v in self.headers.items()}
            with fake.lock:
                fake.requests.append(Recorded(method, self.path, headers, body))
            if self.path.startswith("/files/"):
                data = fake.file(self.path)
                if data is None:
                    return self._send(404, b"Not found", "text/plain")
                kind = "video/mp4" if self.path.endswith(".mp4") else "image/png"
                return self._send(200, data, kind)
            if headers.get("authorization") != f"Bearer {fake.token}":
                detail = "You did not pass a valid authentication token"
                return self._json(*problem(401, "Unauthenticated", detail))
            fault = self._fault(method)
            if fault is not None:
                return self._fault_answer(fault)
            with fake.lock:
                return self._json(*self._route(method, body, headers))

        def _fault(self, method: str) -> Fault | None:
            with fake.lock:
                if method == "POST" and CREATE.match(self.path) and fake.create_faults:
                    return fake.create_faults.popleft()
                if method == "GET" and PREDICTION.match(self.path) and fake.get_faults:
                    return fake.get_faults.popleft()
            return None

        def _route(self, method: str, body: Any, headers: dict[str, str]) -> tuple[int, dict]:
            create, known = CREATE.match(self.path), PREDICTION.match(self.path)
            if method == "GET" and self.path == "/v1/account":
                return 200, {"type": "organization", "username": "acme", "name": "Acme"}
            if method == "POST" and create:
                model = f"{create['owner']}/{create['name']}" if create["owner"] else "version"
                if create["owner"] and model not in fake.models:
                    return problem(404, "Not found", f"Model {model} does not exist")
                if not isinstance(body, dict) or not isinstance(body.get("input"), dict):
                    missing = {"type": "required", "field": "input", "description": "required"}
                    detail = "- input: required"
                    return problem(422, "Input validation failed", detail, invalid_fields=[missing])
                return 201, fake.as_json(fake.create(model, body, headers))
            if known and known["id"] in fake.predictions:
                prediction = fake.predictions[known["id"]]
                if method == "POST" and known["cancel"]:
                    if prediction.status not in ("succeeded", "failed", "canceled", "aborted"):
                        prediction.status = "canceled"
                    return 200, fake.as_json(prediction)
                if method == "GET" and not known["cancel"]:
                    fake.advance(prediction)
                    return 200, fake.as_json(prediction)
            return problem(404, "Not found", "Not found.")

        def _fault_answer(self, fault: Fault) -> None:
            time.sleep(fault.delay)
            if isinstance(fault.body, dict):
                data, kind = json.dumps(fault.body).encode(), "application/problem+json"
            else:
                data = fault.body.encode() if isinstance(fault.body, str) else fault.body
                kind = "text/html"
            self._send(fault.status, data, kind, fault.headers)

        def _json(self, status: int, obj: dict) -> None:
            kind = "application/problem+json" if status >= 400 else "application/json"
            self._send(status, json.dumps(obj).encode(), kind)

        def _send(
            self, status: int, data: bytes, kind: str, extra: dict[str, str] | None = None
        ) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                for key, value in (extra or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (its timeout): nothing to answer

    return Handler
