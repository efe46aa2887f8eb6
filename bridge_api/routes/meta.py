"""Liveness, the OpenAPI document and local media files."""

from __future__ import annotations

import os
from pathlib import Path

import redis
from flask import Blueprint, current_app, jsonify, send_file
from werkzeug.exceptions import NotFound
from werkzeug.security import safe_join

from bridge_api.http.limits import limiter
from bridge_api.openapi.document import openapi_document
from bridge_api.stores.predictions import prediction_store
from wf_core.config import SharedSettings, resource_variable_set
from wf_core.media_types import CONTENT_TYPES

bp = Blueprint("meta", __name__)
# The old default UPLOAD_DIR ($MEDIA_DIR/incoming) may still hold raw uploads: never served.
LEGACY_UPLOAD_FOLDER = "incoming"


@bp.get("/healthz")
def healthz():
    """Alive, and whether each dependency answers: 503 ("degraded") while one does not.

    Each is named, never its address (this route is public): the orchestrator
    (dagster-webserver), the state database, the rate limiter's store, the provider
    limiter's Redis and local media storage. One not configured is `not_configured`."""
    gateway = current_app.extensions["dagster"]
    reachable = gateway.reachable()
    checks = {
        "orchestrator": "ok" if reachable else "unavailable",
        "state_db": _check(_state_db),
        "rate_limits": _check(_rate_limit_store),
        "provider_limiter": _check(_provider_limiter),
        "media_storage": _check(_media_storage),
    }
    healthy = all(v in ("ok", "not_configured") for v in checks.values())
    body = {
        "status": "ok" if healthy else "degraded",
        "orchestrator": {"reachable": reachable},
        "dependencies": checks,
        "auth_mode": current_app.config.get("AUTH_MODE", "supabase"),
    }
    return jsonify(body), 200 if healthy else 503


def _check(probe) -> str:
    try:
        return probe()
    except Exception as exc:
        current_app.logger.warning("health check: %s: %s", probe.__name__, exc)
        return "unavailable"


def _state_db() -> str:
    with prediction_store().engine.connect() as conn:
        conn.exec_driver_sql("SELECT 1")
    return "ok"


def _rate_limit_store() -> str:
    storage = limiter.storage
    if storage is None or current_app.config.get("RATELIMIT_STORAGE_URI", "").startswith(
        "memory://"
    ):
        return "ok"
    return "ok" if storage.check() else "unavailable"


def _provider_limiter() -> str:
    url = SharedSettings.from_env().provider_limits_redis_url  # the workers' setting, read now
    if not url:
        return "not_configured"
    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        return "ok" if client.ping() else "unavailable"
    finally:
        client.close()


def _media_storage() -> str:
    if resource_variable_set("CLOUDINARY_URL"):
        return "not_configured"  # a cloud service: its outages show as retried steps
    root = Path(current_app.config["MEDIA_DIR"]).resolve()
    while not root.exists() and root != root.parent:
        root = root.parent  # made on first use: its nearest existing parent must take it
    return "ok" if root.is_dir() and os.access(root, os.W_OK) else "unavailable"


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI 3 document of the bridge's routes."""
    return jsonify(openapi_document())


@bp.get("/media/<path:filename>")
def media(filename: str):
    """A file of local media storage; anything else is the same 404."""
    path = media_file(filename)
    # Our formats get the types the rest of the system uses, not the host's mime table's.
    mimetype = CONTENT_TYPES.get(path.suffix.lstrip(".").lower())
    return send_file(path, mimetype=mimetype, max_age=3600)


def media_file(filename: str) -> Path:
    """The real file of `filename`; 404 if missing, a raw upload, or really outside MEDIA_DIR."""
    root = Path(current_app.config["MEDIA_DIR"]).resolve()
    joined = safe_join(str(root), filename)
    try:
        path = Path(joined).resolve() if joined else None
    except (OSError, ValueError):  # a NUL byte, a symlink loop
        path = None
    private = (Path(current_app.config["UPLOAD_DIR"]).resolve(), root / LEGACY_UPLOAD_FOLDER)
    if (
        path is None
        or not path.is_relative_to(root)
        or any(path.is_relative_to(folder) for folder in private)
        or not path.is_file()
    ):
        raise NotFound()
    return path
