"""Alembic migrations of the engine's newer tables (credits, idempotency keys, callbacks).

`upgrade(engine)` brings a database to the newest revision. Its version table is
`wf_alembic_version`, not Alembic's default: Dagster keeps its own `alembic_version`
in the same PostgreSQL database when the state database is Dagster's. Several processes
may upgrade at once (bridge workers, `prepare_instance`): on PostgreSQL an advisory lock
lets one do it; on SQLite the file's write lock does.
"""

from __future__ import annotations

import threading
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine

VERSION_TABLE = "wf_alembic_version"
HERE = Path(__file__).resolve().parent
# Any fixed 64-bit number: the advisory lock that serializes upgrades on one database.
ADVISORY_LOCK = 7_315_004_211
_done: set[str] = set()
_lock = threading.Lock()


def alembic_config(engine: Engine) -> Config:
    """An Alembic config for these migrations on `engine` (no alembic.ini needed)."""
    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine) -> None:
    """Apply every migration not yet applied to `engine`'s database (once per process)."""
    key = engine.url.render_as_string(hide_password=False)
    with _lock:
        if key in _done:
            return
        config = alembic_config(engine)
        if engine.dialect.name == "postgresql":
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": ADVISORY_LOCK})
                try:
                    config.attributes["connection"] = conn
                    command.upgrade(config, "head")
                    conn.commit()
                finally:
                    conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_LOCK})
                    conn.commit()
        else:
            with engine.begin() as conn:
                # Take SQLite's write lock first: a second process waits here, then finds
                # the revision applied.
                conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS wf_migration_lock (x INTEGER)")
                conn.exec_driver_sql("DELETE FROM wf_migration_lock")
                config.attributes["connection"] = conn
                command.upgrade(config, "head")
        _done.add(key)


def current_revision(engine: Engine) -> str | None:
    """The database's applied revision, or None before the first migration."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        return context.get_current_revision()
