"""The production profile's settings (RUN_LAUNCHER=celery), from `EngineSettings` of an
environment (this process's, or the one a worker or launcher is given).

One place decides the broker, the result backend, the queues and how priorities map,
for both sides: the launcher in the daemon (dagster.yaml) and the workers (wf-worker).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from wf_core.config import EngineSettings

DEFAULT_QUEUE = "dagster"
# Run monitoring resumes a run whose worker died this many times before failing it.
DEFAULT_RESUME_ATTEMPTS = 2
DEFAULT_MONITOR_INTERVAL_SECONDS = 30
# dagster/priority of a continuation run (sensors/parked_steps.py): it goes first.
BROKER_PRIORITY_LEVELS = 10


class ProfileError(ValueError):
    """The celery profile is asked for but its configuration is incomplete or wrong."""


def celery_enabled(env: Mapping[str, str] | None = None) -> bool:
    """Whether RUN_LAUNCHER selects the Celery run launcher."""
    return EngineSettings.from_env(env).run_launcher == "celery"


def broker_url(env: Mapping[str, str]) -> str:
    """CELERY_BROKER_URL: Redis (`redis://`, `rediss://`) or RabbitMQ (`amqp://`, `amqps://`)."""
    url = (EngineSettings.from_env(env).celery_broker_url or "").strip()
    if not url:
        raise ProfileError(
            "RUN_LAUNCHER=celery needs CELERY_BROKER_URL (redis://host:6379/1 or "
            "amqp://user:pw@host:5672//)"
        )
    scheme = urlsplit(url).scheme
    if scheme not in ("redis", "rediss", "amqp", "amqps", "pyamqp"):
        raise ProfileError(f"CELERY_BROKER_URL must be a redis:// or amqp:// URL, not {scheme}://")
    return url


def result_backend(env: Mapping[str, str]) -> str:
    """CELERY_RESULT_BACKEND, else the broker's Redis, else PostgreSQL (`db+` SQLAlchemy).

    Never `rpc://` (dagster-celery's default): its task states reach only the process that
    sent the task, so the daemon's run monitoring would see every run as unknown.
    """
    configured = (EngineSettings.from_env(env).celery_result_backend or "").strip()
    if configured:
        return configured
    broker = broker_url(env)
    if broker.startswith(("redis://", "rediss://")):
        return broker
    pg = require_postgres(env)
    return "db+postgresql+psycopg2://" + pg.split("://", 1)[1]


def require_postgres(env: Mapping[str, str]) -> str:
    """DAGSTER_PG_URL: workers on other hosts share one storage, so SQLite is refused."""
    config = EngineSettings.from_env(env)
    url = (config.dagster_pg_url or "").strip()
    if not url:
        raise ProfileError(
            "RUN_LAUNCHER=celery needs PostgreSQL storage: set DAGSTER_PG_URL "
            "(run workers on other hosts cannot share a SQLite file)"
        )
    state = config.wf_state_db_url or url
    if state.startswith("sqlite"):
        raise ProfileError("RUN_LAUNCHER=celery needs WF_STATE_DB_URL on PostgreSQL, not SQLite")
    return url


def is_redis(url: str) -> bool:
    """Whether a broker URL is Redis (its priorities run the other way)."""
    return url.startswith(("redis://", "rediss://"))


def celery_settings(env: Mapping[str, str]) -> dict[str, Any]:
    """Celery settings shared by the launcher and the workers (`config_source`)."""
    broker = broker_url(env)
    transport: dict[str, Any] = {
        "max_retries": 3,
        "interval_start": 0,
        "interval_step": 0.2,
        "interval_max": 0.5,
    }
    if is_redis(broker):
        # One list per priority level (kombu's default merges them into 4 steps).
        transport["priority_steps"] = list(range(BROKER_PRIORITY_LEVELS))
        transport["queue_order_strategy"] = "priority"
    return {
        # Task states with the worker's name: run monitoring checks that worker's host.
        "result_extended": True,
        "result_expires": EngineSettings.from_env(env).celery_result_expires,
        # One run at a time per pool slot; none held back by a busy worker.
        "worker_prefetch_multiplier": 1,
        "broker_transport_options": transport,
        "broker_connection_retry_on_startup": True,
        "task_default_priority": 5,
    }


def queues(env: Mapping[str, str]) -> list[str]:
    """CELERY_QUEUES: the queues a worker listens on (comma-separated)."""
    raw = EngineSettings.from_env(env).celery_queues
    return [q.strip() for q in raw.split(",") if q.strip()]


def launcher_config(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """dagster.yaml's `run_launcher` block for the Celery profile."""
    env = os.environ if env is None else env
    require_postgres(env)
    config = EngineSettings.from_env(env)
    return {
        "module": "runtime.celery_launcher",
        "class": "WorkflowCeleryRunLauncher",
        "config": {
            "broker": broker_url(env),
            "backend": result_backend(env),
            "default_queue": config.celery_default_queue,
            "config_source": celery_settings(env),
        },
    }


def monitoring_config(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Run monitoring additions: resume a run whose worker died, poll interval."""
    config = EngineSettings.from_env(env)
    return {
        "max_resume_run_attempts": config.celery_resume_attempts,
        "poll_interval_seconds": config.run_monitoring_interval,
    }


def broker_priority(dagster_priority: int, broker: str) -> int:
    """The broker priority of a run from its `dagster/priority` (0 normal, 10 continuation).

    0..9, higher first on RabbitMQ (`x-max-priority`); Redis lists run lowest first.
    """
    level = max(0, min(BROKER_PRIORITY_LEVELS - 1, 5 + dagster_priority // 2))
    return BROKER_PRIORITY_LEVELS - 1 - level if is_redis(broker) else level
