"""The Flask app factory."""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify

from bridge_api.errors import register_error_handlers
from bridge_api.workflows import bp as workflows_bp


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the bridge app; `test_config` overrides settings in tests."""
    app = Flask(__name__)
    app.config.from_mapping(SPECS_DIR=None)
    if test_config:
        app.config.from_mapping(test_config)
    app.register_blueprint(workflows_bp)

    register_error_handlers(app)

    @app.get("/healthz")
    def healthz():
        return jsonify({"status": "ok"})

    return app
