"""Where `gunicorn_conf.py` finds the rate limiter's storage check (the limits live in
http/limits.py)."""

from __future__ import annotations

from bridge_api.http.limits import check_limit_storage, storage_uri_from_env

__all__ = ["check_limit_storage", "storage_uri_from_env"]
