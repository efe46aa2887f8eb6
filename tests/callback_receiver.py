"""An API client's webhook endpoint on loopback: verifies each delivery's signature."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from wf_core.webhook_signature import SignatureError, verify


class CallbackReceiver:
    """Answers `statuses` in turn (the last repeats); keeps each delivery and its verdict."""

    def __init__(self, secret: str, statuses: list[int]) -> None:
        self.secret = secret
        self.statuses = statuses
        self.deliveries: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                try:
                    verify(receiver.secret, dict(self.headers), body, time.time())
                    verified = True
                except SignatureError:
                    verified = False
                n = len(receiver.deliveries)
                status = receiver.statuses[min(n, len(receiver.statuses) - 1)]
                receiver.deliveries.append(
                    {
                        "verified": verified,
                        "webhook_id": self.headers.get("webhook-id"),
                        "body": json.loads(body),
                        "answered": status,
                    }
                )
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """Where to send deliveries."""
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/jobs"

    def __enter__(self) -> CallbackReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
