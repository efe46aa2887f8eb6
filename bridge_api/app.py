"""The Flask app factory."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import NotFound

from bridge_api.dagster_client.gateway import DagsterGateway
from bridge_api.http.auth import auth_config_from_env, init_auth
from bridge_api.http.errors import register_error_handlers
from bridge_api.http.forms import LimitedFormRequest
from bridge_api.http.limits import init_limits
from bridge_api.http.logging_json import init_logging
from bridge_api.routes import admin, credits, hooks, jobs, meta, metrics, stream, workflows
from bridge_api.routes.page import init_page
from bridge_api.settings import BridgeSettings
from bridge_api.stores.catalog import SpecCatalog
from bridge_api.stores.predictions import prediction_store
from bridge_api.streaming.feeds import StreamHub
from wf_core import settings
from wf_core.config import secret_value
from wf_core.webhook_signature import secret_key
from wf_store.spec_versions import SpecVersions
from wf_store.state_db import upgrade_at_start


def config_from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """app.config from the environment, checked by `BridgeSettings` (SettingsError names a
    bad variable); README's configuration table lists them."""
    env = BridgeSettings.from_env(environ)
    home = env.dagster_home or str(settings.dagster_home())
    return {
        "DAGSTER_GRAPHQL_URL": env.dagster_graphql_url,
        "MEDIA_DIR": env.media_dir or str(settings.media_dir()),
        # Raw uploads stay out of MEDIA_DIR, which is served publicly under /media/.
        "UPLOAD_DIR": env.upload_dir or str(Path(home) / "uploads"),
        "MAX_UPLOAD_MB": env.max_upload_mb,
        "SPECS_DIR": env.workflow_specs_dir,
        "RATELIMIT_EXECUTE": env.ratelimit_execute,
        "RATELIMIT_RETRY": env.ratelimit_retry,
        "RATELIMIT_STORAGE_URI": env.ratelimit_storage_uri,
        # Keeps apart the counts of deployments (or test runs) that share one Redis.
        "RATELIMIT_KEY_PREFIX": env.ratelimit_key_prefix,
        "STREAM_POLL_SECONDS": env.stream_poll_seconds,
        "STREAM_ACTIVE_POLL_SECONDS": env.stream_active_poll_seconds,
        "STREAM_HEARTBEAT_SECONDS": env.stream_heartbeat_seconds,
        # PostgreSQL storage: Dagster's run event notifications wake the stream feeds,
        # which then poll only every STREAM_NOTIFIED_POLL_SECONDS besides.
        "DAGSTER_PG_URL": env.dagster_pg_url,
        "STREAM_NOTIFIED_POLL_SECONDS": env.stream_notified_poll_seconds,
        # Open streams per process; past it a stream is refused with 503 and Retry-After.
        "MAX_STREAMS": env.max_streams,
        "STREAM_RETRY_AFTER_SECONDS": env.stream_retry_after_seconds,
        # Unset: /hooks/replicate refuses every delivery and the sensor polls instead.
        "REPLICATE_WEBHOOK_SECRET": secret_value(env.replicate_webhook_secret),
        # Unset: /metrics is open (bind the bridge to an internal address then).
        "METRICS_TOKEN": secret_value(env.metrics_token),
        # `json` (one redacted JSON object per line, with request context) or `text`.
        "LOG_FORMAT": env.log_format,
        "CREDITS": env.credits,
        # Job webhooks (bridge_api/callbacks.py); unset secret: callback_url is refused.
        "CALLBACK_SIGNING_SECRET": secret_value(env.callback_signing_secret),
        "CALLBACK_ALLOWED_HOSTS": env.callback_allowed_hosts,
        "ALLOW_HTTP_CALLBACKS": env.allow_http_callbacks,
        # The Workflows page (bridge_api/page.py).
        "WEB_DIST_DIR": env.web_dist_dir,
        "SUPABASE_ANON_KEY": secret_value(env.supabase_anon_key),
        **auth_config_from_env(environ),
    }


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the bridge app; `test_config` overrides settings in tests."""
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
    app.register_blueprint(credits.bp)  # GET /credits, POST /admin/credits/grant (issue 15)
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
