"""Liveness, the OpenAPI document and local media files."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, current_app, jsonify, send_file
from werkzeug.exceptions import NotFound
from werkzeug.security import safe_join

from bridge_api.openapi import openapi_document
from wf_core.media_types import CONTENT_TYPES

bp = Blueprint("meta", __name__)
# The old default UPLOAD_DIR ($MEDIA_DIR/incoming) may still hold raw uploads: never served.
LEGACY_UPLOAD_FOLDER = "incoming"


@bp.get("/healthz")
def healthz():
    """Alive, and whether Dagster answers."""
    gateway = current_app.extensions["dagster"]
    reachable = gateway.reachable()
    body = {
        "status": "ok" if reachable else "degraded",
        # Not the GraphQL address: this route is public and that address is internal.
        "orchestrator": {"reachable": reachable},
        "auth_mode": current_app.config.get("AUTH_MODE", "supabase"),
    }
    return jsonify(body), 200 if reachable else 503


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
