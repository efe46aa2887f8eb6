"""Every setting the bridge reads from its environment, typed and declared once.

`create_app` builds `BridgeSettings` once (through `config_from_env`): a bad value stops
start-up with the variable's name. The settings shared with the engine come from
`wf_core.config.SharedSettings`; gunicorn's own (`WEB_CONCURRENCY`) are declared here too
so README's table lists them.
"""

from __future__ import annotations

from typing import Annotated, Literal

from limits import parse_many
from pydantic import BeforeValidator, Field, SecretStr, field_validator

from wf_core.config import OnOff, Seconds, SharedSettings, Wait, lowercase, setting


class BridgeSettings(SharedSettings):
    """The Flask bridge and its gunicorn."""

    dagster_graphql_url: str = setting(
        "http://127.0.0.1:3000/graphql", "the Dagster webserver's GraphQL endpoint"
    )
    upload_dir: str | None = setting(
        None, "raw uploads (kept out of `MEDIA_DIR`)", unset="`$DAGSTER_HOME/uploads`"
    )
    max_upload_mb: Annotated[float, Field(gt=0, allow_inf_nan=False)] = setting(
        50.0, "largest upload (MB)"
    )
    ratelimit_execute: str = setting("10 per minute", "rate limit of execute, per client")
    ratelimit_retry: str = setting("20 per minute", "rate limit of retry, per client")
    ratelimit_storage_uri: str = setting(
        "memory://", "rate limit counts: `redis://...` when several workers share them"
    )
    ratelimit_key_prefix: str = setting(
        "", "keeps apart the counts of deployments sharing one Redis"
    )
    stream_poll_seconds: Seconds = setting(1.0, "a stream's poll of a quiet job")
    stream_active_poll_seconds: Seconds = setting(0.25, "a stream's poll of a running step")
    stream_heartbeat_seconds: Seconds = setting(15.0, "seconds between SSE heartbeats")
    stream_notified_poll_seconds: Seconds = setting(
        2.0, "with PostgreSQL: poll besides Dagster's run event notifications"
    )
    max_streams: Annotated[int, Field(ge=1)] = setting(
        1000, "open streams per process (503 with Retry-After past it); gunicorn's connections"
    )
    stream_retry_after_seconds: Annotated[int, Field(ge=0)] = setting(
        5, "`Retry-After` of a refused stream"
    )
    web_concurrency: Annotated[int, Field(ge=1)] = setting(
        2, "gunicorn worker processes (`bridge_api/gunicorn_conf.py`)"
    )
    replicate_webhook_secret: SecretStr | None = setting(
        None, "Replicate's webhook signing secret (`whsec_...`)", unset="every webhook refused"
    )
    metrics_token: SecretStr | None = setting(
        None, "bearer token of `GET /metrics`", unset="`/metrics` is open"
    )
    log_format: Annotated[Literal["json", "text"], BeforeValidator(lowercase)] = setting(
        "json", "the bridge's logs: `json` lines with request context, or `text`"
    )
    credits: OnOff = setting("off", "`on`: credits held at execute and captured per step")
    auth_mode: Annotated[Literal["supabase", "disabled"], BeforeValidator(lowercase)] = setting(
        "supabase", "`disabled`: no authentication, every caller is `local-dev` (demo only)"
    )
    supabase_url: str | None = setting(None, "Supabase project URL (its JWKS verifies tokens)")
    supabase_jwt_secret: SecretStr | None = setting(
        None, "Supabase's legacy HS256 JWT secret (32+ characters)"
    )
    supabase_anon_key: SecretStr | None = setting(None, "the page's Supabase anon key")
    auth_algorithms: str | None = setting(
        None, "accepted JWT algorithms, comma-separated", unset="by the keys configured"
    )
    jwks_cache_seconds: Wait = setting(600.0, "seconds a fetched JWKS is kept")
    jwks_min_refetch_seconds: Wait = setting(30.0, "least seconds between JWKS fetches")
    jwt_leeway_seconds: Wait = setting(30.0, "clock skew allowed on `exp` (seconds)")
    web_dist_dir: str | None = setting(
        None, "the built Workflows page", unset="`web/dist/` in the checkout"
    )

    @field_validator("ratelimit_execute", "ratelimit_retry")
    @classmethod
    def _limit_parses(cls, value: str) -> str:
        parse_many(value)  # ValueError: "couldn't parse rate limit string ..."
        return value
