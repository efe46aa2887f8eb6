"""The HTTP side of the fake Replicate: routing, auth, problem+json errors, request records,
and the signed webhooks it sends out."""

from __future__ import annotations

import base64
import hashlib
import heapq
import hmac
import itertools
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import httpx

if TYPE_CHECKING:
    from tests.fakes.replicate_server import FakeReplicate

CREATE = re.compile(r"^/v1/(?:models/(?P<owner>[^/]+)/(?P<name>[^/]+)/)?predictions$")
PREDICTION = re.compile(r"^/v1/predictions/(?P<id>[^/]+)(?P<cancel>/cancel)?$")
WEBHOOK_EVENTS = {"start", "output", "logs", "completed"}


@dataclass
class Fault:
    """One scripted HTTP answer: status, body (dict for problem+json, else raw), headers.

    `drop` closes the connection without an answer (after `delay`). `accept` does the work
    first (a create makes the prediction, so it is billed; a read advances it) while the
    client hears only the fault; an accepted fault with a 2xx status sends the real answer,
    late by `delay`.
    """

    status: int
    body: dict | str | bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    accept: bool = False
    drop: bool = False


@dataclass
class Recorded:
    """One request the fake received."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class WebhookDelivery:
    """One attempt to deliver a webhook; a dropped one is recorded with error "dropped"."""

    prediction_id: str
    webhook_id: str
    status: str  # the prediction status in the body sent
    attempt: int  # 1 for the first try, 2 for the first retry, ...
    code: int | None  # the receiver's HTTP status, None if there was no answer
    error: str | None  # the transport error, or "dropped"
    at: float  # wall time (time.time()) of the attempt


@dataclass(order=True)
class _Message:
    due: float  # time.monotonic() at which to (re)send
    seq: int  # keeps messages due at once in the order they were made
    url: str = field(compare=False)
    prediction_id: str = field(compare=False)
    webhook_id: str = field(compare=False)
    status: str = field(compare=False)
    body: bytes = field(compare=False)
    attempt: int = field(default=1, compare=False)


def problem(status: int, title: str, detail: str, **more: Any) -> tuple[int, dict]:
    """A problem+json answer as Replicate writes them."""
    return status, {"title": title, "detail": detail, "status": status, **more}


def new_webhook_id() -> str:
    """A fresh Standard Webhooks message id, e.g. msg_3f2c..."""
    return f"msg_{uuid.uuid4().hex}"


def sign_webhook(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The webhook-signature header Replicate sends (Standard Webhooks, v1 = HMAC-SHA256)."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


class WebhookSender:
    """Delivers webhooks from its own thread, in order, with the fake's delay, hold and retries."""

    def __init__(self, fake: FakeReplicate) -> None:
        self.fake = fake
        self.held = False
        self._queue: list[_Message] = []
        self._seq = itertools.count()
        self._cv = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="fake-webhooks", daemon=True)

    @property
    def pending(self) -> int:
        """Messages queued or waiting for a retry."""
        with self._cv:
            return len(self._queue)

    def start(self) -> None:
        """Start the sender thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop sending; whatever is still queued is never sent."""
        with self._cv:
            self._stopped = True
            self._cv.notify_all()
        if self._thread.is_alive():
            self._thread.join(10)

    def hold(self, held: bool) -> None:
        """Keep messages queued (True) or send them from now on (False)."""
        with self._cv:
            self.held = held
            self._cv.notify_all()

    def send(self, url: str, prediction_id: str, webhook_id: str, prediction: dict) -> None:
        """Queue one message, due after the fake's webhook_delay."""
        body = json.dumps(prediction).encode()
        due = time.monotonic() + self.fake.webhook_delay
        message = _Message(
            due, next(self._seq), url, prediction_id, webhook_id, prediction["status"], body
        )
        self._push(message)

    def _push(self, message: _Message) -> None:
        with self._cv:
            heapq.heappush(self._queue, message)
            self._cv.notify_all()

    def _next(self) -> _Message | None:
        with self._cv:
            while not self._stopped:
                if self.held or not self._queue:
                    self._cv.wait()
                elif (wait := self._queue[0].due - time.monotonic()) > 0:
                    self._cv.wait(wait)
                else:
                    return heapq.heappop(self._queue)
            return None

    def _run(self) -> None:
        with httpx.Client(timeout=5.0, trust_env=False) as client:
            while (message := self._next()) is not None:
                self._attempt(client, message)

    def _attempt(self, client: httpx.Client, message: _Message) -> None:
        at = time.time()
        timestamp = int(at)
        headers = {
            "content-type": "application/json",
            "user-agent": "fake-replicate-webhook",
            "webhook-id": message.webhook_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign_webhook(
                self.fake.webhook_secret, message.webhook_id, timestamp, message.body
            ),
        }
        code: int | None = None
        error: str | None = None
        try:
            code = client.post(message.url, content=message.body, headers=headers).status_code
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        self.fake.record_delivery(
            WebhookDelivery(
                message.prediction_id,
                message.webhook_id,
                message.status,
                message.attempt,
                code,
                error,
                at,
            )
        )
        if (code is None or not 200 <= code < 300) and message.attempt <= self.fake.webhook_retries:
            # Same message id on every retry, as Replicate (Svix) does; the timestamp is new.
            backoff = self.fake.webhook_retry_backoff * 2 ** (message.attempt - 1)
            message.due, message.attempt = time.monotonic() + backoff, message.attempt + 1
            self._push(message)


def make_handler(fake: FakeReplicate) -> type[BaseHTTPRequestHandler]:
    """A request handler class bound to one fake."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out in two writes

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
            url = urlsplit(self.path)
            if url.path.startswith("/files/"):
                data = fake.file(url.path)
                if data is None:
                    return self._send(404, b"Not found", "text/plain")
                kind = "video/mp4" if url.path.endswith(".mp4") else "image/png"
                return self._send(200, data, kind)
            if headers.get("authorization") != f"Bearer {fake.token}":
                detail = "You did not pass a valid authentication token"
                return self._json(*problem(401, "Unauthenticated", detail))
            fault = self._fault(method, url.path)
            if fault is not None and not fault.accept:
                return self._fault_answer(fault)
            with fake.lock:
                answer = self._route(method, url.path, url.query, body, headers)
            if fault is not None:  # accepted: the work is done, the client hears the fault
                return self._fault_answer(fault, answer)
            return self._json(*answer)

        def _fault(self, method: str, path: str) -> Fault | None:
            with fake.lock:
                if method == "POST" and CREATE.match(path) and fake.create_faults:
                    return fake.create_faults.popleft()
                if method == "GET" and PREDICTION.match(path) and fake.get_faults:
                    return fake.get_faults.popleft()
            return None

        def _route(
            self, method: str, path: str, query: str, body: Any, headers: dict[str, str]
        ) -> tuple[int, dict]:
            create, known = CREATE.match(path), PREDICTION.match(path)
            if method == "GET" and path == "/v1/account":
                return 200, {"type": "organization", "username": "acme", "name": "Acme"}
            if method == "GET" and path == "/v1/webhooks/default/secret":
                return 200, {"key": fake.webhook_secret}
            if method == "GET" and path == "/v1/predictions":
                return fake.listing({k: v[-1] for k, v in parse_qs(query).items()})
            if method == "POST" and create:
                model = f"{create['owner']}/{create['name']}" if create["owner"] else "version"
                if create["owner"] and model not in fake.models:
                    return problem(404, "Not found", f"Model {model} does not exist")
                invalid = _invalid_create(body)
                if invalid:
                    detail = "\n".join(f"- {f['field']}: {f['description']}" for f in invalid)
                    return problem(422, "Input validation failed", detail, invalid_fields=invalid)
                return 201, fake.as_json(fake.create(model, body, headers))
            if known and known["id"] in fake.predictions:
                prediction = fake.predictions[known["id"]]
                if method == "POST" and known["cancel"]:
                    fake.cancel(prediction)
                    return 200, fake.as_json(prediction)
                if method == "GET" and not known["cancel"]:
                    fake.advance(prediction)
                    return 200, fake.as_json(prediction)
            return problem(404, "Not found", "Not found.")

        def _fault_answer(self, fault: Fault, real: tuple[int, dict] | None = None) -> None:
            time.sleep(fault.delay)
            if fault.drop:
                self.close_connection = True  # no answer at all: the client sees a disconnect
                return
            if real is not None and 200 <= fault.status < 300:
                return self._json(*real)
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


def _invalid_create(body: Any) -> list[dict[str, str]]:
    """The invalid_fields Replicate would list for this create body (empty if it is fine)."""
    if not isinstance(body, dict) or not isinstance(body.get("input"), dict):
        return [{"type": "required", "field": "input", "description": "required"}]
    invalid = []
    if body.get("webhook") is not None and not str(body["webhook"]).startswith("http"):
        invalid.append({"type": "format", "field": "webhook", "description": "must be a URL"})
    events = body.get("webhook_events_filter")
    if events is not None and (not isinstance(events, list) or set(events) - WEBHOOK_EVENTS):
        allowed = f"must be a list of {sorted(WEBHOOK_EVENTS)}"
        invalid.append({"type": "enum", "field": "webhook_events_filter", "description": allowed})
    return invalid
