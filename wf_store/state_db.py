"""The engine's state database: one engine per process and URL, at the newest revision.

Alembic owns every table (`wf_store.schema`, `wf_store/migrations`); stores never create
one. Each process's composition root (the code location's load, the bridge's app factory,
`prepare_instance`, the CLIs) upgrades the database once at start, and the shared store
upgrades on first use, so a database that was down at start is upgraded when it answers.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from wf_store.migrations import upgrade

log = logging.getLogger(__name__)
_engines: dict[tuple[int, str], Engine] = {}
_engines_lock = threading.Lock()


def engine_for(url: str) -> Engine:
    """A new engine: WAL SQLite with a busy timeout, or pooled PostgreSQL."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg2://" + url.split("://", 1)[1]
    # A few connections per process, kept open: not one new connection per statement.
    return sa.create_engine(url, pool_size=2, max_overflow=4, pool_pre_ping=True)


def shared_engine(url: str) -> Engine:
    """This process's engine for `url`: keyed by pid too, so pooled connections never
    cross a fork."""
    key = (os.getpid(), url)
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _engines[key] = engine_for(url)
        return engine


def open_state_db(url: str) -> Engine:
    """This process's engine for `url`, its database upgraded to the newest revision.

    The upgrade runs once per process; while the database does not answer it raises
    (an OperationalError: the bridge's 503 `dependency_unavailable`) and the next call
    tries again.
    """
    engine = shared_engine(url)
    upgrade(engine)
    return engine


def upgrade_at_start(url: str) -> bool:
    """Upgrade the database as a process starts; False (logged) if it did not answer.

    Not fatal: the process starts anyway, and its first use of the database upgrades it
    (`open_state_db`) once it answers.
    """
    try:
        open_state_db(url)
    except (SQLAlchemyError, OSError) as exc:
        log.warning("state database not upgraded at start, retried on first use: %s", exc)
        return False
    return True
