"""Per-user rate limits on execute and retry (Flask-Limiter), answered as JSON 429s.

In-memory by default; with several bridge processes set RATELIMIT_STORAGE_URI to a
shared store such as `redis://127.0.0.1:6379/0`.
"""

from __future__ import annotations

from flask import Flask, g, request
from flask_limiter import Limiter

limiter = Limiter(key_func=lambda: request.remote_addr or "unknown")


def user_key() -> str:
    """Limits count per authenticated user (auth runs before the limit is checked)."""
    return f"user:{getattr(g, 'user_id', None) or request.remote_addr}"


def execute_limit() -> str:
    """The execute limit from config, e.g. "10 per minute"."""
    from flask import current_app

    return current_app.config["RATELIMIT_EXECUTE"]


def retry_limit() -> str:
    """The retry limit from config."""
    from flask import current_app

    return current_app.config["RATELIMIT_RETRY"]


def init_limits(app: Flask) -> None:
    """Attach the limiter with the app's storage and JSON breach answers."""
    app.config.setdefault("RATELIMIT_STORAGE_URI", "memory://")
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", True)
    limiter.init_app(app)
