"""dagster-postgres storages that keep a few connections open per process.

dagster-postgres opens a new PostgreSQL connection for every statement (`NullPool`)
outside the webserver: ~4.7 ms of server CPU per connection against ~0.1 ms for the
statement, and a two-generation job's three runs opened ~450 connections
(bench/inflight.py). These subclasses share one small pool per process instead.

A pool must not cross a fork: the prewarmed launcher forks run workers from a zygote.
An at-fork hook makes every child drop the connections it inherited (without closing
them: they are the parent's) and open its own.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any

from dagster_postgres.event_log import PostgresEventLogStorage
from dagster_postgres.run_storage import PostgresRunStorage
from dagster_postgres.schedule_storage import PostgresScheduleStorage
from dagster_postgres.utils import (
    create_pg_engine,
    get_token_provider_from_config,
    pg_url_from_config,
)
from sqlalchemy import pool as db_pool
from sqlalchemy.engine import Engine

# One engine per database per process, shared by the three storages: a run worker keeps
# one connection (two under concurrency), not one per storage; the daemon's threads may
# open a few more, which are closed again when returned.
POOL_SIZE = 2
MAX_OVERFLOW = 6
POOL_RECYCLE_SECONDS = 1800

_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def _forget_inherited_connections() -> None:
    for engine in list(_engines.values()):
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_forget_inherited_connections)


def _shared_engine(storage: Any) -> Engine:
    with _lock:
        engine = _engines.get(storage.postgres_url)
        if engine is None:
            engine = _engines[storage.postgres_url] = create_pg_engine(
                storage.postgres_url,
                storage._token_provider,
                isolation_level="AUTOCOMMIT",
                poolclass=db_pool.QueuePool,
                pool_size=POOL_SIZE,
                max_overflow=MAX_OVERFLOW,
                pool_recycle=POOL_RECYCLE_SECONDS,
                pool_pre_ping=True,
            )
        return engine


def _pool(storage: Any) -> None:
    """Replace the storage's NullPool engine with the process's pooled one."""
    old = storage._engine
    storage._engine = _shared_engine(storage)
    old.dispose()


def _args(config_value: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "postgres_url": pg_url_from_config(config_value),
        "should_autocreate_tables": config_value.get("should_autocreate_tables", True),
        "token_provider": get_token_provider_from_config(config_value),
    }


class _SchemaChecksOnce:
    """Dagster asks the database whether a migration's columns exist on every read of
    runs (`get_run_records` reflects the runs table: three catalog queries each time, 15 of
    a continuation run's ~280 statements). A column that exists stays: a True answer is
    kept for the life of the process (a `dagster instance migrate` restarts it anyway)."""

    _known: set[str]

    def _once(self, name: str, check: Any) -> bool:
        known = self.__dict__.setdefault("_known", set())
        if name in known:
            return True
        found = bool(check())
        if found:
            known.add(name)
        return found


class PooledPostgresRunStorage(_SchemaChecksOnce, PostgresRunStorage):
    """Run storage on a small connection pool."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _pool(self)

    def has_run_stats_index_cols(self) -> bool:
        """Whether the runs table has its start/end time columns (asked once)."""
        return self._once("run_stats", super().has_run_stats_index_cols)

    def has_bulk_actions_selector_cols(self) -> bool:
        """Whether the bulk actions table has its selector column (asked once)."""
        return self._once("bulk_selector", super().has_bulk_actions_selector_cols)

    def has_backfill_id_column(self) -> bool:
        """Whether the runs table has its backfill id column (asked once)."""
        return self._once("backfill_id", super().has_backfill_id_column)

    def has_bulk_action_job_name_column(self) -> bool:
        """Whether the bulk actions table has its job name column (asked once)."""
        return self._once("bulk_job_name", super().has_bulk_action_job_name_column)

    def has_backfill_tags_table(self) -> bool:
        """Whether the backfill tags table exists (asked once)."""
        return self._once("backfill_tags", super().has_backfill_tags_table)

    @classmethod
    def from_config_value(cls, inst_data: Any, config_value: Any) -> PooledPostgresRunStorage:
        """Built from dagster.yaml's `run_storage.config` (dagster-postgres' own schema)."""
        return cls(inst_data=inst_data, **_args(config_value))


class PooledPostgresEventLogStorage(_SchemaChecksOnce, PostgresEventLogStorage):
    """Event log storage on a small connection pool."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _pool(self)

    def has_asset_key_col(self, column_name: str) -> bool:
        """Whether the asset key table has this column (asked once per column)."""
        check = super().has_asset_key_col
        return self._once(f"asset_key.{column_name}", lambda: check(column_name))

    @classmethod
    def from_config_value(
        cls, inst_data: Any, config_value: Mapping[str, Any]
    ) -> PooledPostgresEventLogStorage:
        """Built from dagster.yaml's `event_log_storage.config`."""
        return cls(inst_data=inst_data, **_args(config_value))


class PooledPostgresScheduleStorage(PostgresScheduleStorage):
    """Schedule (and sensor tick) storage on a small connection pool."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _pool(self)

    @classmethod
    def from_config_value(cls, inst_data: Any, config_value: Any) -> PooledPostgresScheduleStorage:
        """Built from dagster.yaml's `schedule_storage.config`."""
        return cls(inst_data=inst_data, **_args(config_value))
