"""The Flask app factory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import NotFound

from bridge_api.auth import auth_config_from_env, init_auth
from bridge_api.catalog import SpecCatalog
from bridge_api.dagster_gateway import DagsterGateway
from bridge_api.errors import register_error_handlers
from bridge_api.feeds import StreamHub
from bridge_api.forms import LimitedFormRequest
from bridge_api.limits import init_limits, storage_uri_from_env
from bridge_api.logging_json import init_logging
from bridge_api.page import init_page
from bridge_api.predictions import prediction_store
from wf_core import settings
from wf_core.webhook_signature import secret_key
from wf_store.spec_versions import SpecVersions
from wf_store.state_db import upgrade_at_start


def config_from_env(environ: os._Environ | dict) -> dict[str, Any]:
    """Settings from the environment (API.md's configuration table)."""
    media = environ.get("MEDIA_DIR") or str(settings.media_dir())
    home = environ.get("DAGSTER_HOME") or str(settings.dagster_home())
    return {
        "DAGSTER_GRAPHQL_URL": environ.get("DAGSTER_GRAPHQL_URL", "http://127.0.0.1:3000/graphql"),
        "MEDIA_DIR": media,
        # Raw uploads stay out of MEDIA_DIR, which is served publicly under /media/.
        "UPLOAD_DIR": environ.get("UPLOAD_DIR") or str(Path(home) / "uploads"),
        "MAX_UPLOAD_MB": float(environ.get("MAX_UPLOAD_MB") or 50),
        "SPECS_DIR": environ.get("WORKFLOW_SPECS_DIR") or None,
        "RATELIMIT_EXECUTE": environ.get("RATELIMIT_EXECUTE", "10 per minute"),
        "RATELIMIT_RETRY": environ.get("RATELIMIT_RETRY", "20 per minute"),
        "RATELIMIT_STORAGE_URI": storage_uri_from_env(environ),
        # Keeps apart the counts of deployments (or test runs) that share one Redis.
        "RATELIMIT_KEY_PREFIX": environ.get("RATELIMIT_KEY_PREFIX", ""),
        "STREAM_POLL_SECONDS": float(environ.get("STREAM_POLL_SECONDS") or 1.0),
        "STREAM_ACTIVE_POLL_SECONDS": float(environ.get("STREAM_ACTIVE_POLL_SECONDS") or 0.25),
        "STREAM_HEARTBEAT_SECONDS": float(environ.get("STREAM_HEARTBEAT_SECONDS") or 15.0),
        # PostgreSQL storage: Dagster's run event notifications wake the stream feeds,
        # which then poll only every STREAM_NOTIFIED_POLL_SECONDS besides.
        "DAGSTER_PG_URL": environ.get("DAGSTER_PG_URL") or None,
        "STREAM_NOTIFIED_POLL_SECONDS": float(environ.get("STREAM_NOTIFIED_POLL_SECONDS") or 2.0),
        # Open streams per process; past it a stream is refused with 503 and Retry-After.
        "MAX_STREAMS": int(environ.get("MAX_STREAMS") or 1000),
        "STREAM_RETRY_AFTER_SECONDS": int(environ.get("STREAM_RETRY_AFTER_SECONDS") or 5),
        # Unset: /hooks/replicate refuses every delivery and the sensor polls instead.
        "REPLICATE_WEBHOOK_SECRET": environ.get("REPLICATE_WEBHOOK_SECRET") or None,
        # Unset: /metrics is open (bind the bridge to an internal address then).
        "METRICS_TOKEN": environ.get("METRICS_TOKEN") or None,
        # `json` (one redacted JSON object per line, with request context) or `text`.
        "LOG_FORMAT": environ.get("LOG_FORMAT") or "json",
        **auth_config_from_env(environ),
    }


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the bridge app; `test_config` overrides settings in tests."""
    from bridge_api import admin, hooks, jobs, meta, metrics, stream, workflows
    from wf_core.retry_policy import retry_settings_from_env

    # No static folder: Flask would add an undocumented /static/ route; media has its own.
    app = Flask(__name__, static_folder=None)
    app.request_class = LimitedFormRequest
    app.config.from_mapping(config_from_env(os.environ))
    if test_config:
        app.config.from_mapping(test_config)
    # The run workers read the input from this path, whatever their working directory.
    app.config["UPLOAD_DIR"] = str(Path(app.config["UPLOAD_DIR"]).resolve())
    if not app.config["MAX_UPLOAD_MB"] > 0:
        raise ValueError(f"MAX_UPLOAD_MB must be positive, not {app.config['MAX_UPLOAD_MB']}")
    max_bytes = int(app.config["MAX_UPLOAD_MB"] * 1024 * 1024)
    app.config["MAX_UPLOAD_BYTES"] = max_bytes
    # Werkzeug refuses a larger body before parsing it; the gate checks the file itself.
    app.config["MAX_CONTENT_LENGTH"] = max_bytes + 1024 * 1024
    if app.config.get("REPLICATE_WEBHOOK_SECRET"):
        secret_key(app.config["REPLICATE_WEBHOOK_SECRET"])  # BadSecretError: refuse to start
    init_http_rules(app)
    init_logging(app)
    init_auth(app)
    init_limits(app)
    register_error_handlers(app)
    if app.config.get("PREDICTION_STORE") is None:  # a test's injected store is its own
        upgrade_at_start(app.config.get("STATE_DB_URL") or settings.state_db_url())
    app.extensions["dagster"] = DagsterGateway(app.config["DAGSTER_GRAPHQL_URL"])
    app.extensions["specs"] = SpecCatalog(
        app.config["SPECS_DIR"],
        loaded_jobs=lambda: app.extensions["dagster"].job_names(),
        versions=lambda: SpecVersions(prediction_store()),
    )
    app.extensions["retry_settings"] = retry_settings_from_env()
    app.extensions["streams"] = StreamHub(app, app.config["MAX_STREAMS"])
    for blueprint in (workflows.bp, jobs.bp, stream.bp, hooks.bp, meta.bp):
        app.register_blueprint(blueprint)
    from bridge_api import credits  # GET /credits, POST /admin/credits/grant (issue 15)

    app.register_blueprint(credits.bp)
    app.register_blueprint(metrics.bp)
    app.register_blueprint(admin.bp)
    init_page(app)  # the Workflows page at `/`, in front of the API's routes
    return app


def init_http_rules(app: Flask) -> None:
    """No redirects for `//` in a path (a JSON 404 instead), and `nosniff` on every answer."""
    # Before any route is added: a rule takes the map's setting when it is bound.
    app.url_map.merge_slashes = False

    @app.before_request
    def _refuse_empty_path_segments() -> None:
        # Werkzeug strips leading slashes before matching, so `//healthz` would still match.
        if "//" in request.environ.get("PATH_INFO", ""):
            raise NotFound()

    @app.after_request
    def _nosniff(response: Response) -> Response:
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response
