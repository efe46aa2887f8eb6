"""Where test alerts land: a webhook receiver (Slack's `{"text": ...}` JSON) and an SMTP
server (aiosmtpd), each on a free loopback port, started and stopped by the test."""

from __future__ import annotations

import json
import threading
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller

from runtime.stack import free_port


class WebhookReceiver:
    """An HTTP server that keeps every JSON body POSTed to it."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        bodies = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                length = int(self.headers.get("Content-Length") or 0)
                bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def texts(self) -> list[str]:
        """The `text` of every message received, in order."""
        return [body["text"] for body in self.bodies]

    def __enter__(self) -> WebhookReceiver:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class SmtpReceiver:
    """An SMTP server that keeps every message it is sent."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.port = free_port()
        messages = self.messages

        class Handler:
            async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802
                messages.append(message_from_bytes(envelope.content))
                return "250 OK"

        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> SmtpReceiver:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()
