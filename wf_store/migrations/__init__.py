"""Alembic migrations of every table of the engine's state database (`wf_store.schema`).

`upgrade(engine)` brings a database to the newest revision; it is the only way tables
are made. Its version table is
`wf_alembic_version`, not Alembic's default: Dagster keeps its own `alembic_version`
in the same PostgreSQL database when the state database is Dagster's. Several processes
may upgrade at once (bridge workers, the code server, run workers, `prepare_instance`): on
PostgreSQL an advisory lock lets one do it; on SQLite the file's write lock does (taken
with BEGIN IMMEDIATE, waiting up to the engine's busy timeout).
"""

from __future__ import annotations

import threading
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
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
        if current_revision(engine) == ScriptDirectory.from_config(config).get_current_head():
            _done.add(key)  # the usual start: nothing to do, so no lock to wait for
            return
        if engine.dialect.name == "postgresql":
            with engine.connect() as conn:
                # A session lock: held across the upgrade's transaction, until unlocked.
                conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": ADVISORY_LOCK})
                conn.commit()
                try:
                    config.attributes["connection"] = conn
                    command.upgrade(config, "head")
                    conn.commit()
                finally:
                    conn.rollback()  # after a failed upgrade: end its aborted transaction
                    conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_LOCK})
                    conn.commit()
        else:
            with engine.begin() as conn:
                # Take SQLite's write lock first: a second process waits here, then finds
                # the revision applied. (pysqlite would not begin before DDL by itself.)
                conn.exec_driver_sql("BEGIN IMMEDIATE")
                config.attributes["connection"] = conn
                command.upgrade(config, "head")
        _done.add(key)


def current_revision(engine: Engine) -> str | None:
    """The database's applied revision, or None before the first migration."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        return context.get_current_revision()
