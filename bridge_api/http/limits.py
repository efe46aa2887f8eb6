"""Per-user rate limits on execute and retry (Flask-Limiter), answered as JSON 429s.

In-memory by default, which counts per process: with several bridge processes (gunicorn
workers) RATELIMIT_STORAGE_URI must name a shared store such as `redis://127.0.0.1:6379/0`,
and the gunicorn config refuses to start otherwise (`check_limit_storage`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping

from flask import Flask, current_app, g, jsonify, request
from flask_limiter import Limiter, RateLimitExceeded

from bridge_api.http.errors import ApiError

DEFAULT_STORAGE_URI = "memory://"

limiter = Limiter(key_func=lambda: request.remote_addr or "unknown")


def storage_uri_from_env(environ: Mapping[str, str]) -> str:
    """RATELIMIT_STORAGE_URI, in memory when unset."""
    return environ.get("RATELIMIT_STORAGE_URI") or DEFAULT_STORAGE_URI


def check_limit_storage(processes: int, storage_uri: str) -> None:
    """Refuse (RuntimeError) in-memory limits shared by nobody across several processes."""
    if processes > 1 and storage_uri.startswith("memory://"):
        raise RuntimeError(
            f"{processes} bridge workers with RATELIMIT_STORAGE_URI={storage_uri}: each worker"
            f" would count rate limits alone, admitting {processes} times the limit. Set"
            " RATELIMIT_STORAGE_URI=redis://<host>:6379/0 (shared by every worker) or run"
            " one worker (-w 1)."
        )


def user_key() -> str:
    """Limits count per authenticated user (auth runs before the limit is checked)."""
    return f"user:{getattr(g, 'user_id', None) or request.remote_addr}"


def execute_limit() -> str:
    """The execute limit from config, e.g. "10 per minute"."""
    return current_app.config["RATELIMIT_EXECUTE"]


def retry_limit() -> str:
    """The retry limit from config."""
    return current_app.config["RATELIMIT_RETRY"]


def retry_after_seconds(clock: Callable[[], float] = time.time) -> int:
    """Whole seconds until the limit this request broke lets a request through again."""
    broken = limiter.current_limit
    if broken is None:
        return 1
    window = broken.limit.get_expiry()
    return max(1, min(window, math.ceil(broken.reset_at - clock())))


def _rate_limited(exc: RateLimitExceeded):
    seconds = retry_after_seconds()
    error = ApiError(
        429,
        "rate_limited",
        f"Too many requests: at most {exc.description}. Try again in {seconds} s.",
        headers={"Retry-After": str(seconds)},
    )
    return jsonify(error.body()), error.status, error.headers


def init_limits(app: Flask) -> None:
    """Attach the limiter with the app's storage and JSON 429s that say when to come back."""
    app.config.setdefault("RATELIMIT_STORAGE_URI", DEFAULT_STORAGE_URI)
    # Off: Flask-Limiter would put its own Retry-After (the window's reset) on every answer
    # of a limited route, overwriting a 503's "come back in 5 s". 429s set it themselves.
    app.config["RATELIMIT_HEADERS_ENABLED"] = False
    limiter.init_app(app)
    app.register_error_handler(RateLimitExceeded, _rate_limited)
