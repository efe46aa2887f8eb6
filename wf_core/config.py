"""Every setting the engine reads from its environment, typed and declared once.

`EngineSettings.from_env()` reads and checks them all: the code location builds it when it
loads, so a bad value stops start-up with the variable's name (`SettingsError`) instead of
failing a run later. The bridge's own settings (`bridge_api/settings.py`) share
`SharedSettings`. README's configuration table is rendered from these classes
(`scripts/config_table.py`); a test fails when the two drift apart.

An empty variable counts as unset, as it always has here. Secrets a Dagster resource takes
through `dg.EnvVar` are not fields: they are listed in `RESOURCE_VARIABLES`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Annotated, Any, Literal, Self

from pydantic import BeforeValidator, Field, SecretStr, ValidationError, field_validator
from pydantic.json_schema import JsonDict
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from wf_core.rate_limit import parse_rules

# Read by Dagster resources through `dg.EnvVar` (the value never passes through Python
# config); definitions.py checks only whether each is set. Name -> (type, meaning).
RESOURCE_VARIABLES: dict[str, tuple[str, str]] = {
    "REPLICATE_API_TOKEN": ("secret", "run models on Replicate (unset: the offline provider)"),
    "REPLICATE_API_BASE_URL": ("text", "Replicate's API address (a stand-in server in tests)"),
    "CLOUDINARY_URL": ("secret", "store media on Cloudinary (unset: local media)"),
    "ALERT_WEBHOOK_URL": ("secret", 'alerts to a Slack-compatible webhook (`{"text": ...}`)'),
    "ALERT_SMTP_PASSWORD": ("secret", "the SMTP password for alert e-mail"),
}


def resource_variable_set(name: str, env: Mapping[str, str] | None = None) -> bool:
    """Whether one of `RESOURCE_VARIABLES` is set (its value stays with the resource)."""
    if name not in RESOURCE_VARIABLES:
        raise KeyError(f"{name} is not a resource variable")
    return bool((os.environ if env is None else env).get(name))


def secret_value(secret: SecretStr | None) -> str | None:
    """The secret's text, or None when unset."""
    return secret.get_secret_value() if secret is not None else None


class SettingsError(ValueError):
    """A setting's value cannot be used; the message names the variable."""


def lowercase(value: Any) -> Any:
    """A choice as compared: stripped, lower case."""
    return value.strip().lower() if isinstance(value, str) else value


# Switches and choices compare case-insensitively, as the code reading them always did.
OnOff = Annotated[Literal["on", "off"], BeforeValidator(lowercase)]
Seconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Wait = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=1)]
Port = Annotated[int, Field(ge=1, le=65535)]
Launcher = Annotated[Literal["prewarmed", "default", "celery"], BeforeValidator(lowercase)]


def setting(default: Any, description: str, unset: str | None = None, **rules: Any) -> Any:
    """A field: its default, its README line, and what an unset value means."""
    extra: JsonDict | None = {"unset": unset} if unset else None
    return Field(default, description=description, json_schema_extra=extra, **rules)


# Set while `from_env` validates: its mapping is the whole environment (never mixed with
# this process's, which may not be the one asked about).
_GIVEN_ENV: ContextVar[bool] = ContextVar("settings_given_env", default=False)


class _EnvSettings(BaseSettings):
    """Fields named as their variables (lower case); an empty variable is unset."""

    model_config = SettingsConfigDict(
        case_sensitive=False, env_ignore_empty=True, extra="ignore", frozen=True
    )

    @classmethod
    def variables(cls) -> dict[str, str]:
        """Field name -> environment variable."""
        return {name: name.upper() for name in cls.model_fields}

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """`from_env` reads only the mapping it is given; `cls()` reads the environment too."""
        return (init_settings,) if _GIVEN_ENV.get() else (init_settings, env_settings)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        """The settings from `env` (another process's), this process's by default."""
        env = os.environ if env is None else env
        values = {name: env[var] for name, var in cls.variables().items() if env.get(var)}
        token = _GIVEN_ENV.set(True)
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise SettingsError(describe(cls, exc)) from None
        finally:
            _GIVEN_ENV.reset(token)


def describe(cls: type[BaseSettings], exc: ValidationError) -> str:
    """`Invalid setting NAME: why (got 'value')` for each bad field; secrets never shown."""
    lines = []
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else "?"
        field = cls.model_fields.get(name)
        secret = field is not None and "SecretStr" in str(field.annotation)
        shown = "" if secret else f" (got {error.get('input')!r})"
        lines.append(f"Invalid setting {name.upper()}: {error['msg']}{shown}")
    return "; ".join(lines)


class SharedSettings(_EnvSettings):
    """Read by the engine and the bridge alike."""

    dagster_home: str | None = setting(
        None,
        "instance folder; `python -m runtime.instance` writes its `dagster.yaml`",
        unset="`.dagster_home/` in the checkout",
    )
    dagster_pg_url: str | None = setting(
        None,
        "`postgresql://user:pw@host:port/db`: run, event and schedule storage on PostgreSQL",
        unset="SQLite",
    )
    wf_state_db_url: str | None = setting(
        None,
        "the engine's own tables (predictions, credits, uploads...): SQLAlchemy URL",
        unset="`DAGSTER_PG_URL`, else `$DAGSTER_HOME/wf_state.db` (SQLite)",
    )
    media_dir: str | None = setting(None, "local media storage", unset="`.media/`")
    workflow_specs_dir: str | None = setting(None, "spec folder", unset="`workflow_specs/`")
    run_launcher: Launcher = setting(
        "prewarmed", '`prewarmed`, `default`, or `celery` (see "Several hosts")'
    )
    upload_store: Annotated[Literal["db", "disk"] | None, BeforeValidator(lowercase)] = setting(
        None,
        "`db`: uploads kept in the engine's database (any host reads them); `disk`: `UPLOAD_DIR`",
        unset="`db` with `RUN_LAUNCHER=celery`, else `disk`",
    )
    provider_limits_redis_url: str | None = setting(
        None,
        "Redis of the provider rate limiter shared by every run worker",
        unset="no limits beyond the provider's own 429s",
    )
    callback_signing_secret: SecretStr | None = setting(
        None, "signs job webhooks (`whsec_...`)", unset="no job webhooks"
    )
    callback_allowed_hosts: str = setting(
        "", "hosts (`host` or `host:port`, comma-separated) a job webhook may go to inside"
    )
    allow_http_callbacks: OnOff = setting("off", "`on`: plain `http` job webhooks (development)")
    retry_backoff_base: Wait = setting(10.0, "retry policy: first backoff (seconds)")
    retry_backoff_cap: Wait = setting(600.0, "retry policy: longest backoff (seconds)")
    retry_quota_cooldown: Wait = setting(60.0, "retry policy: first quota cooldown (seconds)")
    retry_quota_cooldown_cap: Wait = setting(
        1800.0, "retry policy: longest quota cooldown (seconds)"
    )
    retry_rate_limit_default: Wait = setting(
        60.0, "retry policy: wait after a 429 without a reset time (seconds)"
    )
    retry_auth_check_interval: Wait = setting(
        60.0, "retry policy: seconds between checks of an invalid key"
    )


class EngineSettings(SharedSettings):
    """The code location, sensors, run workers and `runtime` commands."""

    checkpoint_url: str | None = setting(
        None,
        "checkpoint store: a folder or an fsspec URL (`s3://bucket/prefix`)",
        unset="`$DAGSTER_HOME/checkpoints`",
    )
    staging_url: str | None = setting(
        None, "where staged provider outputs live", unset="`$CHECKPOINT_URL/_staged`"
    )
    media_base_url: str = setting("/media", "URL prefix of local media")
    cloudinary_upload_prefix: str | None = setting(None, "folder prefix of Cloudinary uploads")
    public_base_url: str | None = setting(
        None,
        "the address providers call back (`<it>/hooks/replicate`)",
        unset="polling only",
    )
    local_provider_latency: Wait = setting(0.0, "seconds the offline provider spends per call")
    local_provider_faults: str | None = setting(
        None, "JSON file of faults the offline provider simulates (drills)"
    )
    local_provider_call_log: str | None = setting(
        None, "file the offline provider appends each call to (tests)"
    )
    local_provider_api_key: SecretStr | None = setting(
        None, "the key the offline provider expects (drills of `invalid_key`)"
    )
    provider_rate_limits: str | None = setting(
        None,
        "`provider[:model]=creates/seconds[,concurrent]` rules, `;`-separated",
        unset="Replicate's published limits",
    )
    provider_limits_prefix: str = setting("wf:provider-limit", "Redis key prefix of the limiter")
    provider_limit_max_wait: Wait = setting(
        120.0, "longest wait (seconds) for a provider slot before a retryable error"
    )
    provider_limit_margin_seconds: Wait = setting(1.0, "safety margin (seconds) per window")
    provider_limit_inflight_ttl: Seconds = setting(
        3600.0, "seconds a held concurrency slot lives if its worker dies"
    )
    poll_interval_seconds: Seconds = setting(
        30.0, "with webhooks: a parked prediction with no webhook is polled after this"
    )
    poll_max_per_second: Seconds = setting(20.0, "cap on provider reads by the poller")
    handoff_batch: Count = setting(40, "continuation runs requested per sensor tick")
    continuation_worker: OnOff = setting(
        "on",
        "the warm continuation worker (`python -m sensors.continuations`, PostgreSQL only) "
        "continues completed predictions and takes runs the queue's limits allow at once",
    )
    owner_check_interval_seconds: Seconds = setting(15.0, "the owner check: how often")
    owner_check_batch: Count = setting(500, "the owner check: open jobs read per tick")
    owner_check_grace_seconds: Wait = setting(
        30.0, "the owner check: how long a job may be seen without an owner before acting"
    )
    callback_max_attempts: Count = setting(8, "deliveries of a job webhook before it is failed")
    alert_failure_rate: Annotated[float, Field(ge=0, le=1)] = setting(
        0.2, "alert: failed / finished runs of a workflow at or above this"
    )
    alert_failure_window_seconds: Seconds = setting(900.0, "alert: failure rate window")
    alert_failure_min_runs: Count = setting(5, "alert: finished runs before a rate counts")
    alert_stuck_step_seconds: Seconds = setting(600.0, "alert: a step running this long")
    alert_storage_window_seconds: Seconds = setting(900.0, "alert: storage failures window")
    alert_breaker_open_seconds: Seconds = setting(900.0, "alert: a quota breaker open this long")
    alert_retry_queue_growth: Count = setting(20, "alert: the retry queue grew by this many")
    alert_retry_queue_window_seconds: Seconds = setting(900.0, "alert: retry queue window")
    alert_clear_after_seconds: Wait = setting(
        300.0, "alert: a condition clears once it has not held for this long"
    )
    alert_ownerless_window_seconds: Wait = setting(
        900.0, "alert: how long the jobs-without-owner alert holds after the last one"
    )
    alert_check_interval_seconds: Seconds = setting(30.0, "how often alert rules are evaluated")
    dagster_ui_url: str = setting("http://127.0.0.1:3000", "links in alert messages")
    alert_smtp_host: str | None = setting(None, "alert e-mail: SMTP host (STARTTLS when offered)")
    alert_smtp_port: Port = setting(25, "alert e-mail: SMTP port")
    alert_smtp_from: str = setting("alerts@localhost", "alert e-mail: sender")
    alert_smtp_to: str | None = setting(None, "alert e-mail: recipients, comma-separated")
    alert_smtp_user: str | None = setting(None, "alert e-mail: SMTP user")
    max_concurrent_runs: Count = setting(6, "queued run coordinator limit")
    max_runs_per_user: Annotated[int, Field(ge=0)] | None = setting(
        None,
        "runs of one user in progress at once (`0`: no cap)",
        unset="`MAX_CONCURRENT_RUNS - 1`",
    )
    compute_logs: Annotated[Literal["off", "local"], BeforeValidator(lowercase)] = setting(
        "off", "`local` captures run stdout/stderr (four helper processes per run)"
    )
    pg_pool: OnOff = setting("on", "`off`: Dagster's own PostgreSQL storage, without our pool")
    log_format: Annotated[Literal["text", "json"], BeforeValidator(lowercase)] = setting(
        "text", "`json`: the engine's logs and runs' records as JSON lines"
    )
    code_server_port: Port = setting(4266, "`python -m runtime.code_server`'s port")
    code_location_module: str = setting("definitions", "module a celery worker imports first")
    celery_broker_url: str | None = setting(
        None,
        "with `RUN_LAUNCHER=celery`: `redis://host:6379/1` or `amqp://user:pw@host:5672//`",
        unset="required with `RUN_LAUNCHER=celery`",
    )
    celery_result_backend: str | None = setting(
        None,
        "task states run monitoring reads (never `rpc://`)",
        unset="the broker's Redis, else PostgreSQL",
    )
    celery_result_expires: Count = setting(86400, "seconds celery keeps a task state")
    celery_default_queue: str = setting("dagster", "the queue runs are sent to")
    celery_queues: str = setting("dagster", "the queues a worker takes, comma-separated")
    celery_resume_attempts: Annotated[int, Field(ge=0)] = setting(
        2, "resumes of a run whose worker died"
    )
    run_monitoring_interval: Count = setting(30, "seconds between run health checks (celery)")
    worker_concurrency: Count | None = setting(
        None, "runs at once per worker host (`wf-worker`)", unset="3 × cores"
    )

    @field_validator("provider_rate_limits")
    @classmethod
    def _rules_parse(cls, value: str | None) -> str | None:
        if value is not None:
            parse_rules(value)  # ValueError names the bad rule
        return value
