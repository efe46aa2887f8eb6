"""Liveness, the OpenAPI document and local media files."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, send_from_directory

from bridge_api.openapi import openapi_document

bp = Blueprint("meta", __name__)


@bp.get("/healthz")
def healthz():
    """Alive, and whether Dagster answers."""
    gateway = current_app.extensions["dagster"]
    reachable = gateway.reachable()
    body = {
        "status": "ok" if reachable else "degraded",
        "orchestrator": {"url": gateway.graphql_url, "reachable": reachable},
        "auth_mode": current_app.config.get("AUTH_MODE", "supabase"),
    }
    return jsonify(body), 200 if reachable else 503


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI 3 document of the bridge's routes."""
    return jsonify(openapi_document())


@bp.get("/media/<path:filename>")
def media(filename: str):
    """A file of local media storage; paths outside MEDIA_DIR are refused (404)."""
    return send_from_directory(current_app.config["MEDIA_DIR"], filename, max_age=3600)
