"""A fake Replicate API on a loopback port: documented wire format, scripted faults, records."""

from __future__ import annotations

import re
import socket
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import ThreadingHTTPServer
from typing import Any

from tests.fakes.replicate_handler import Fault, Recorded, make_handler
from tests.fakes.sample_media import mp4_bytes, png_bytes

TERMINAL = {"succeeded", "failed", "canceled", "aborted"}
THROTTLED = "Request was throttled. Your rate limit resets in ~30s."


@dataclass
class Script:
    """How new predictions behave: polls spent starting and processing, then the outcome."""

    starting_polls: int = 1
    processing_polls: int = 1
    outcome: str = "succeeded"  # succeeded | failed | canceled | aborted | never
    error: str | None = None


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
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    output: Any = None
    error: str | None = None


def closed_port() -> int:
    """A loopback port nothing listens on (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _duration(text: str) -> float | None:
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text or "")
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * scale[u] for n, u in parts) if parts else None


class FakeReplicate:
    """Serves /v1/models/{owner}/{name}/predictions, /v1/predictions/{id}[/cancel], /files/."""

    def __init__(self, token: str, models: set[str], video_models: set[str]) -> None:
        self.token = token
        self.models = models
        self.video_models = video_models
        self.script = Script()
        self.honor_cancel_after = True
        self.outputs_expired = False
        self.create_faults: deque[Fault] = deque()
        self.get_faults: deque[Fault] = deque()
        self.requests: list[Recorded] = []
        self.predictions: dict[str, Prediction] = {}
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

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
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def fail_creates(self, count: int, fault: Fault) -> None:
        """Answer the next `count` create calls with `fault`."""
        self.create_faults.extend([fault] * count)

    def fail_gets(self, count: int, fault: Fault) -> None:
        """Answer the next `count` prediction reads with `fault`."""
        self.get_faults.extend([fault] * count)

    def release(self) -> None:
        """Let every prediction scripted to never finish succeed at its next read."""
        with self.lock:
            for prediction in self.predictions.values():
                prediction.released = True

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
        logs = "" if p.status == "starting" else f"{min(100, 50 * p.polls)}%|#####| step"
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
            "created_at": p.created_at,
            "urls": {"get": api, "cancel": f"{api}/cancel", "stream": f"{self.url}/stream/{p.id}"},
            "metrics": {},
        }

    def create(self, model: str, body: dict, headers: dict[str, str]) -> Prediction:
        """Make a prediction for a create call that passed every check."""
        p = Prediction(
            id=uuid.uuid4().hex[:26],
            model=model,
            input=body["input"],
            script=self.script,
            cancel_after=_duration(headers.get("cancel-after", "")),
        )
        self.predictions[p.id] = p
        if "wait" in headers.get("prefer", "") and not (
            p.script.starting_polls + p.script.processing_polls
        ):
            self._finish(p)
        return p

    def advance(self, p: Prediction) -> None:
        """One read's worth of progress: starting -> processing -> the scripted end."""
        if p.status in TERMINAL:
            return
        p.polls += 1
        s = p.script
        if self.honor_cancel_after and p.cancel_after is not None:
            if time.monotonic() - p.created > p.cancel_after:
                p.status = "canceled" if p.status == "processing" else "aborted"
                return
        if p.polls >= s.starting_polls + s.processing_polls and (
            s.outcome != "never" or p.released
        ):
            self._finish(p)
        elif p.polls >= s.starting_polls:
            p.status = "processing"

    def _finish(self, p: Prediction) -> None:
        outcome = "succeeded" if p.script.outcome == "never" else p.script.outcome
        p.status = outcome
        if outcome == "succeeded":
            video = p.model in self.video_models
            p.output = f"{self.url}/files/{p.id}/output.{'mp4' if video else 'png'}"
            if not video:
                p.output = [p.output]
        elif outcome == "failed":
            p.error = p.script.error or "Prediction failed."

    def file(self, path: str) -> bytes | None:
        """The bytes of an output file, or None."""
        parts = path.strip("/").split("/")
        if self.outputs_expired or len(parts) != 3 or parts[1] not in self.predictions:
            return None
        return mp4_bytes() if parts[2].endswith(".mp4") else png_bytes()
