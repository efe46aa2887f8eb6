"""A fake Replicate API on a loopback port: documented wire format, scripted faults, records."""

from __future__ import annotations

import base64
import itertools
import re
import secrets
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import urlencode

from tests.fakes.replicate_handler import (
    Fault,
    Recorded,
    WebhookDelivery,
    WebhookSender,
    make_handler,
    new_webhook_id,
    problem,
)
from tests.fakes.sample_media import mp4_bytes, png_bytes

__all__ = ["Fault", "FakeReplicate", "Prediction", "Recorded", "Script", "WebhookDelivery"]

TERMINAL = {"succeeded", "failed", "canceled", "aborted"}
THROTTLED = "Request was throttled. Your rate limit resets in ~30s."
STARTING_SHARE = 0.1  # a time-based prediction spends this share of its time "starting"


@dataclass
class Script:
    """How new predictions behave: polls spent starting and processing, then the outcome.

    With `seconds` set, reads do not move a prediction: it starts, processes and ends by the
    fake's clock, `seconds` after its creation, even if nobody reads it.
    """

    starting_polls: int = 1
    processing_polls: int = 1
    outcome: str = "succeeded"  # succeeded | failed | canceled | aborted | never
    error: str | None = None
    seconds: float | None = None


@dataclass
class Prediction:
    """The fake's state of one prediction."""

    id: str
    model: str
    input: dict
    script: Script
    cancel_after: float | None
    status: str = "starting"
    polls: int = 0
    released: bool = False
    created: float = field(default_factory=time.monotonic)
    created_at: str = field(default_factory=lambda: _stamp())
    output: Any = None
    error: str | None = None
    webhook: str | None = None
    webhook_events_filter: list[str] | None = None
    started_at: str | None = None
    completed_at: str | None = None
    seq: int = 0  # creation order, for the list's order and cursors


def closed_port() -> int:
    """A loopback port nothing listens on (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stamp() -> str:
    # Replicate writes UTC with microseconds and a Z, e.g. 2023-09-08T16:19:34.765994Z.
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _when(text: str | None) -> datetime | None:
    if text is None:
        return None
    when = datetime.fromisoformat(text)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _duration(text: str) -> float | None:
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text or "")
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * scale[u] for n, u in parts) if parts else None


class FakeReplicate:
    """Serves /v1/models/{owner}/{name}/predictions, /v1/predictions[/{id}[/cancel]], /files/.

    Predictions with a webhook get a signed POST when they end. `clock` (default
    time.monotonic) times time-based predictions and Cancel-After; webhooks use real time.
    """

    def __init__(
        self,
        token: str,
        models: set[str],
        video_models: set[str],
        webhook_secret: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.token = token
        self.models = models
        self.video_models = video_models
        self.clock = clock
        self.script = Script()
        self.honor_cancel_after = True
        self.outputs_expired = False
        self.list_page_size = 100
        self.create_faults: deque[Fault] = deque()
        self.get_faults: deque[Fault] = deque()
        self.requests: list[Recorded] = []
        self.predictions: dict[str, Prediction] = {}
        self.lock = threading.Lock()
        self._seq = itertools.count(1)
        # Webhooks: the secret as Replicate's GET /v1/webhooks/default/secret gives it.
        self.webhook_secret = webhook_secret or (
            "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        )
        self.webhook_deliveries: list[WebhookDelivery] = []
        self.drop_webhooks = 0
        self.drop_all_webhooks = False
        self.duplicate_webhooks = False
        self.reorder_webhooks = False
        self.webhook_delay = 0.0
        self.webhook_retries = 3
        self.webhook_retry_backoff = 0.5
        self.sender = WebhookSender(self)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="fake-replicate-clock", daemon=True)

    @property
    def url(self) -> str:
        """The server root, e.g. http://127.0.0.1:PORT."""
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def base_url(self) -> str:
        """The API root to give the provider (REPLICATE_API_BASE_URL)."""
        return f"{self.url}/v1"

    def __enter__(self) -> FakeReplicate:
        self.thread.start()
        self.sender.start()
        self._ticker.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self.sender.stop()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
        self._ticker.join(5)

    def fail_creates(self, count: int, fault: Fault) -> None:
        """Answer the next `count` create calls with `fault`."""
        self.create_faults.extend([fault] * count)

    def fail_gets(self, count: int, fault: Fault) -> None:
        """Answer the next `count` prediction reads with `fault`."""
        self.get_faults.extend([fault] * count)

    def hang_creates(self, seconds: float) -> None:
        """Make the next create's prediction at once but answer it only `seconds` later."""
        self.create_faults.append(Fault(201, accept=True, delay=seconds))

    def hold_webhooks(self) -> None:
        """Queue webhooks instead of sending them (the receiver is down)."""
        self.sender.hold(True)

    def release_webhooks(self) -> None:
        """Send the queued webhooks, in order, and those to come (the receiver is back)."""
        self.sender.hold(False)

    @property
    def webhooks_pending(self) -> int:
        """Webhooks queued (held, delayed or waiting for a retry)."""
        return self.sender.pending

    def release(self) -> None:
        """Let every prediction scripted to never finish succeed at its next read (or tick)."""
        with self.lock:
            for prediction in self.predictions.values():
                prediction.released = True

    def created_count(self, model: str | None = None) -> int:
        """How many predictions were made (what the account is billed for), of `model` or all."""
        with self.lock:
            return sum(1 for p in self.predictions.values() if model in (None, p.model))

    def record_delivery(self, delivery: WebhookDelivery) -> None:
        """Keep one webhook delivery attempt (called by the sender thread)."""
        with self.lock:
            self.webhook_deliveries.append(delivery)

    def recorded(self, method: str, pattern: str) -> list[Recorded]:
        """Requests with this method whose path matches the regex `pattern`."""
        with self.lock:
            return [r for r in self.requests if r.method == method and re.search(pattern, r.path)]

    @property
    def creates(self) -> list[Recorded]:
        """Every create call received."""
        return self.recorded("POST", r"^/v1/(models/[^/]+/[^/]+/)?predictions$")

    @property
    def gets(self) -> list[Recorded]:
        """Every prediction read received."""
        return self.recorded("GET", r"^/v1/predictions/[^/]+$")

    @property
    def lists(self) -> list[Recorded]:
        """Every list call received (its query is in the recorded path)."""
        return self.recorded("GET", r"^/v1/predictions(\?|$)")

    @property
    def cancels(self) -> list[Recorded]:
        """Every cancel call received."""
        return self.recorded("POST", r"^/v1/predictions/[^/]+/cancel$")

    @property
    def downloads(self) -> list[Recorded]:
        """Every output file fetched."""
        return self.recorded("GET", r"^/files/")

    def as_json(self, p: Prediction) -> dict[str, Any]:
        """A prediction as Replicate's API writes it."""
        api = f"{self.base_url}/predictions/{p.id}"
        if p.status == "starting":
            logs = ""
        elif p.script.seconds is None:
            logs = f"{min(100, 50 * p.polls)}%|#####| step"
        else:
            percent = 100 if p.status in TERMINAL else self._percent(p)
            logs = f"{percent}%|{'#' * (percent // 10)}| step"
        return {
            "id": p.id,
            "model": p.model,
            "version": "hidden",
            "input": p.input,
            "logs": logs,
            "output": p.output,
            "data_removed": False,
            "error": p.error,
            "status": p.status,
            "source": "api",
            "created_at": p.created_at,
            "started_at": p.started_at,
            "completed_at": p.completed_at,
            "webhook": p.webhook,
            "urls": {"get": api, "cancel": f"{api}/cancel", "stream": f"{self.url}/stream/{p.id}"},
            "metrics": {},
        }

    def listing(self, query: dict[str, str]) -> tuple[int, dict]:
        """GET /v1/predictions: newest first, created_after/before filters, cursor pages."""
        try:
            after, before = _when(query.get("created_after")), _when(query.get("created_before"))
            toward, mark = _cursor(query.get("cursor"))
        except ValueError as exc:
            return problem(400, "Bad request", str(exc))
        for p in self.predictions.values():
            self._refresh(p)
        low = after or datetime.min.replace(tzinfo=UTC)
        high = before or datetime.max.replace(tzinfo=UTC)
        rows = [
            p
            for p in sorted(self.predictions.values(), key=lambda p: p.seq, reverse=True)
            if low < datetime.fromisoformat(p.created_at) < high
        ]
        size = self.list_page_size
        if toward == "older":
            page = [p for p in rows if p.seq < mark][:size]
        elif toward == "newer":
            page = [p for p in rows if p.seq > mark][-size:]
        else:
            page = rows[:size]
        filters = {k: v for k, v in query.items() if k in ("created_after", "created_before")}

        def link(toward: str, seq: int) -> str:
            cursor = base64.urlsafe_b64encode(f"{toward}:{seq}".encode()).decode()
            return f"{self.base_url}/predictions?{urlencode({**filters, 'cursor': cursor})}"

        older = page and any(p.seq < page[-1].seq for p in rows)
        newer = page and any(p.seq > page[0].seq for p in rows)
        return 200, {
            "previous": link("newer", page[0].seq) if newer else None,
            "next": link("older", page[-1].seq) if older else None,
            "results": [self.as_json(p) for p in page],
        }

    def create(self, model: str, body: dict, headers: dict[str, str]) -> Prediction:
        """Make a prediction for a create call that passed every check."""
        p = Prediction(
            id=uuid.uuid4().hex[:26],
            model=model,
            input=body["input"],
            script=self.script,
            cancel_after=_duration(headers.get("cancel-after", "")),
            created=self.clock(),
            webhook=body.get("webhook"),
            webhook_events_filter=body.get("webhook_events_filter"),
            seq=next(self._seq),
        )
        self.predictions[p.id] = p
        if p.script.seconds is not None:
            self._refresh(p)
        elif "wait" in headers.get("prefer", "") and not (
            p.script.starting_polls + p.script.processing_polls
        ):
            self._finish(p)
        return p

    def cancel(self, p: Prediction) -> None:
        """What POST /v1/predictions/{id}/cancel does: stop it unless it has already ended."""
        if p.status not in TERMINAL:
            self._set_status(p, "canceled")

    def advance(self, p: Prediction) -> None:
        """One read's worth of progress: starting -> processing -> the scripted end."""
        if p.status in TERMINAL:
            return
        p.polls += 1
        if p.script.seconds is not None:
            return self._refresh(p)
        s = p.script
        if self._cancelled_after(p):
            return
        if p.polls >= s.starting_polls + s.processing_polls and (
            s.outcome != "never" or p.released
        ):
            self._finish(p)
        elif p.polls >= s.starting_polls:
            self._set_status(p, "processing")

    def _refresh(self, p: Prediction) -> None:
        """Move a time-based prediction to where the clock says it is (caller holds the lock)."""
        seconds = p.script.seconds
        if seconds is None or p.status in TERMINAL or self._cancelled_after(p):
            return
        elapsed = self.clock() - p.created
        if elapsed >= seconds and (p.script.outcome != "never" or p.released):
            self._finish(p)
        elif elapsed >= STARTING_SHARE * seconds and p.status == "starting":
            self._set_status(p, "processing")

    def _percent(self, p: Prediction) -> int:
        seconds = p.script.seconds or 0.0
        elapsed = self.clock() - p.created
        return min(99, int(100 * elapsed / seconds)) if seconds > 0 else 99

    def _cancelled_after(self, p: Prediction) -> bool:
        """End a prediction whose Cancel-After has passed, as Replicate does; True if it did."""
        if not self.honor_cancel_after or p.cancel_after is None:
            return False
        if self.clock() - p.created <= p.cancel_after:
            return False
        self._set_status(p, "canceled" if p.status == "processing" else "aborted")
        return True

    def _finish(self, p: Prediction) -> None:
        outcome = "succeeded" if p.script.outcome == "never" else p.script.outcome
        if outcome == "succeeded":
            video = p.model in self.video_models
            p.output = f"{self.url}/files/{p.id}/output.{'mp4' if video else 'png'}"
            if not video:
                p.output = [p.output]
        elif outcome == "failed":
            p.error = p.script.error or "Prediction failed."
        self._set_status(p, outcome)

    def _set_status(self, p: Prediction, status: str) -> None:
        """Move a prediction on, stamp it, and send its webhook when it ends."""
        p.status = status
        if status in ("processing", "succeeded", "failed") and p.started_at is None:
            p.started_at = _stamp()
        if status in TERMINAL:
            p.completed_at = _stamp()
            self._send_completed(p)

    def _send_completed(self, p: Prediction) -> None:
        events = p.webhook_events_filter
        if not p.webhook or (events and "completed" not in events):
            return
        if self.drop_all_webhooks or self.drop_webhooks > 0:
            self.drop_webhooks = max(0, self.drop_webhooks - 1)
            dropped = WebhookDelivery(
                p.id, new_webhook_id(), p.status, 1, None, "dropped", time.time()
            )
            self.webhook_deliveries.append(dropped)
            return
        webhook_id, body = new_webhook_id(), self.as_json(p)
        messages = [(webhook_id, body)]
        if self.duplicate_webhooks:
            messages += [(webhook_id, body), (new_webhook_id(), body)]
        if self.reorder_webhooks:  # a stale processing view, sent after the completed one
            stale = replace(p, status="processing", output=None, error=None, completed_at=None)
            messages.append((new_webhook_id(), self.as_json(stale)))
        for message_id, message in messages:
            self.sender.send(p.webhook, p.id, message_id, message)

    def _tick(self) -> None:
        """Ends time-based predictions when their time comes, even if nobody reads them."""
        while not self._stop.wait(0.02):
            with self.lock:
                for p in list(self.predictions.values()):
                    self._refresh(p)

    def file(self, path: str) -> bytes | None:
        """The bytes of an output file, or None."""
        parts = path.strip("/").split("/")
        if self.outputs_expired or len(parts) != 3 or parts[1] not in self.predictions:
            return None
        return mp4_bytes() if parts[2].endswith(".mp4") else png_bytes()


def _cursor(text: str | None) -> tuple[str | None, int]:
    """("older"|"newer", seq) from a list cursor; (None, 0) for the first page."""
    if not text:
        return None, 0
    try:
        toward, _, seq = base64.urlsafe_b64decode(text.encode()).decode().partition(":")
        if toward in ("older", "newer"):
            return toward, int(seq)
    except (ValueError, UnicodeDecodeError):
        pass
    raise ValueError(f"invalid cursor {text!r}")
