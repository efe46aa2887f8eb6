"""Write the Dagster instance config (`$DAGSTER_HOME/dagster.yaml`) from the environment.

SQLite under DAGSTER_HOME by default; PostgreSQL through dagster-postgres when
DAGSTER_PG_URL is set. Run: `python -m runtime.instance`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import yaml

from runtime import celery_config
from runtime.dagster_private import (
    DEFAULT_RUN_LAUNCHER,
    LOCAL_COMPUTE_LOG_MANAGER,
    NOOP_COMPUTE_LOG_MANAGER,
    QUEUED_RUN_COORDINATOR,
)
from wf_core import settings
from wf_core import tags as t
from wf_core.config import EngineSettings
from wf_core.logging_json import dagster_python_logs
from wf_store.migrations import upgrade
from wf_store.state_db import engine_for

DEQUEUE_INTERVAL_SECONDS = 1
# Runs are short now: a step that waits on a model parks and its run ends. What bounds
# them is CPU (two cores here) and memory (~50 MiB PSS per run worker): see the README's
# sizing rule.
MAX_CONCURRENT_RUNS = 6


def postgres_storage(url: str) -> dict[str, Any]:
    """dagster-postgres storage config from a URL, always on the psycopg2 driver.

    SQLAlchemy 2.1 picks psycopg 3 for a bare `postgresql://` URL, and
    dagster-postgres installs psycopg2 only: the scheme is set explicitly.
    """
    parts = urlsplit(url)
    if parts.scheme.split("+")[0] not in ("postgres", "postgresql"):
        raise ValueError(f"DAGSTER_PG_URL must be a postgresql:// URL, not {parts.scheme}://")
    db = {
        "username": unquote(parts.username or "postgres"),
        "hostname": parts.hostname or "127.0.0.1",
        "db_name": (parts.path or "/postgres").lstrip("/") or "postgres",
        "port": parts.port or 5432,
        "scheme": "postgresql+psycopg2",
    }
    if parts.password:
        db["password"] = unquote(parts.password)
    if parts.query:
        db["params"] = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p)
    return {"postgres": {"postgres_db": db}}


def pooled_postgres_storage(url: str) -> dict[str, Any]:
    """The three dagster-postgres storages, each on a small connection pool (PG_POOL=off:
    dagster-postgres' own, a new connection per statement)."""
    db = postgres_storage(url)["postgres"]
    module = "runtime.pg_storage"
    return {
        "run_storage": {"module": module, "class": "PooledPostgresRunStorage", "config": db},
        "event_log_storage": {
            "module": module,
            "class": "PooledPostgresEventLogStorage",
            "config": db,
        },
        "schedule_storage": {
            "module": module,
            "class": "PooledPostgresScheduleStorage",
            "config": db,
        },
    }


def runs_per_user(max_runs: int) -> int:
    """Fair share: runs of one user in progress at once (MAX_RUNS_PER_USER; 0 turns the cap
    off). By default one fewer than the queue's slots, so another user's run always finds
    a slot one user's backlog cannot take: it waits for at most one run to end."""
    configured = EngineSettings.from_env().max_runs_per_user
    return configured if configured is not None else max(1, max_runs - 1)


def tag_concurrency_limits(max_runs: int) -> list[dict[str, Any]]:
    """The queue's tag limits: one run per job, and at most `runs_per_user` per user."""
    limits: list[dict[str, Any]] = [
        # At most one run of a job in progress, whoever launched it (bridge, retry
        # sensor, an operator in Dagster's UI): every run of a job carries its
        # partition tag.
        {"key": "dagster/partition", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}
    ]
    per_user = runs_per_user(max_runs)
    if per_user > 0:
        # Every run of a job carries its user's tag (wf_core.tags.job_tags); the queue
        # skips a run whose user is at the cap and starts the next one that is not.
        limits.append(
            {"key": t.USER, "value": {"applyLimitPerUniqueValue": True}, "limit": per_user}
        )
    return limits


def run_launcher_config() -> dict[str, Any]:
    """The prewarmed launcher (fast starts, health checks); RUN_LAUNCHER=default for Dagster's,
    RUN_LAUNCHER=celery for dagster-celery's on worker hosts (runtime/celery_config.py)."""
    if celery_config.celery_enabled():
        return celery_config.launcher_config()
    if EngineSettings.from_env().run_launcher == "default":
        return _class_config(DEFAULT_RUN_LAUNCHER)
    return {"module": "runtime.launcher", "class": "PrewarmedRunLauncher"}


def compute_logs_config(home: Path) -> dict[str, Any]:
    """No stdout/stderr capture by default; COMPUTE_LOGS=local keeps it under DAGSTER_HOME."""
    if EngineSettings.from_env().compute_logs == "local":
        return {
            **_class_config(LOCAL_COMPUTE_LOG_MANAGER),
            "config": {"base_dir": str(home / "compute_logs")},
        }
    return _class_config(NOOP_COMPUTE_LOG_MANAGER)


def warm_worker_enabled(pg_url: str | None, env: Mapping[str, str] | None = None) -> bool:
    """Whether runs may go to the warm continuation worker (sensors/continuations.py): it
    needs PostgreSQL (NOTIFY) and the prewarmed launcher, and CONTINUATION_WORKER on."""
    config = EngineSettings.from_env(env)
    return (
        bool(pg_url) and config.continuation_worker == "on" and config.run_launcher == "prewarmed"
    )


def run_coordinator_class(pg_url: str | None) -> tuple[str, str]:
    """Dagster's queue; with the warm worker, the queue that hands runs its limits allow to
    the worker at once (runtime/coordinator.py)."""
    if warm_worker_enabled(pg_url):
        return ("runtime.coordinator", "WarmRunCoordinator")
    return QUEUED_RUN_COORDINATOR


def _class_config(module_and_class: tuple[str, str]) -> dict[str, Any]:
    """dagster.yaml's way to name a class: its module and its name."""
    module, name = module_and_class
    return {"module": module, "class": name}


def instance_config(home: Path, pg_url: str | None) -> dict[str, Any]:
    """The whole dagster.yaml as a dict."""
    if celery_config.celery_enabled():
        # Refused here, clearly, rather than by a worker that cannot see the runs.
        celery_config.require_postgres({**os.environ, "DAGSTER_PG_URL": pg_url or ""})
    if not pg_url:
        storage: dict[str, Any] = {"storage": {"sqlite": {"base_dir": str(home / "storage")}}}
    elif EngineSettings.from_env().pg_pool == "off":
        storage = {"storage": postgres_storage(pg_url)}
    else:
        storage = pooled_postgres_storage(pg_url)
    max_runs = EngineSettings.from_env().max_concurrent_runs
    return {
        **storage,
        # Every process that writes to the instance keeps the job read model current.
        "instance_class": {"module": "runtime.read_model", "class": "ProjectingInstance"},
        "run_coordinator": {
            **_class_config(run_coordinator_class(pg_url)),
            "config": {
                "max_concurrent_runs": max_runs,
                "dequeue_interval_seconds": DEQUEUE_INTERVAL_SECONDS,
                # Launch dequeued runs in parallel: a launch waits on a process start.
                "dequeue_use_threads": True,
                "tag_concurrency_limits": tag_concurrency_limits(max_runs),
            },
        },
        "run_launcher": run_launcher_config(),
        # Start and run-time limits; with the prewarmed launcher, monitoring also
        # checks each run worker's health and fails runs whose worker died.
        "run_monitoring": {
            "enabled": True,
            "start_timeout_seconds": 180,
            "max_runtime_seconds": 3 * 3600,
            "poll_interval_seconds": 30,
            **(celery_config.monitoring_config() if celery_config.celery_enabled() else {}),
        },
        "sensors": {"use_threads": True, "num_workers": 2},
        # Steps log through Dagster's event log; capturing stdout/stderr costs four helper
        # processes per run. COMPUTE_LOGS=local turns the capture back on.
        "compute_logs": compute_logs_config(home),
        "telemetry": {"enabled": False},
        "nux": {"enabled": False},
        # LOG_FORMAT=json: runs' log records also as JSON lines with job context (issue 14).
        **({"python_logs": dagster_python_logs()} if _json_logs() else {}),
    }


def _json_logs() -> bool:
    return EngineSettings.from_env().log_format == "json"


def write_instance_yaml(home: Path | None = None, pg_url: str | None = None) -> Path:
    """Create DAGSTER_HOME and write its dagster.yaml; returns the file."""
    home = (home or settings.dagster_home()).resolve()
    pg_url = pg_url if pg_url is not None else EngineSettings.from_env().dagster_pg_url
    home.mkdir(parents=True, exist_ok=True)
    path = home / "dagster.yaml"
    path.write_text(yaml.safe_dump(instance_config(home, pg_url), sort_keys=False))
    return path


def prepare_instance(home: Path | None = None) -> Path:
    """Write dagster.yaml and create the storage once, before any server starts.

    A webserver and a daemon started together on an empty SQLite home race to
    create the same tables, and one of them crashes.
    """
    written = write_instance_yaml(home)
    import dagster as dg

    with dg.DagsterInstance.from_config(str(written.parent)) as instance:
        instance.get_runs(limit=1)
    # Every table of the engine's state database (Alembic), before anyone reads them.
    engine = engine_for(settings.state_db_url(written.parent))
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    return written


if __name__ == "__main__":
    print(f"wrote {prepare_instance()}", file=sys.stderr)
