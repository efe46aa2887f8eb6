"""Wake-ups of the warm continuation worker: PostgreSQL NOTIFY, sent in the transaction
that records what it is about, and LISTEN on the worker's own connection.

Two channels:
- `COMPLETED`: a prediction was recorded completed (payload: its intent id), sent by the
  webhook receiver or the poller in the transaction that records the completion;
- `LAUNCH`: a run was handed to the warm worker by the run coordinator (payload: its run
  id), sent once its STARTING event is written.
A NOTIFY is lost if nobody listens: every wake-up is also found by a slower path (the
parked-steps sensor, the worker's own sweep at start and every few seconds).
SQLite has neither: on SQLite nothing is sent and no worker listens.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

COMPLETED_CHANNEL = "wf_completed"
LAUNCH_CHANNEL = "wf_launch"
# The worker's listening connection names itself so, so that others can see it listens.
WORKER_APPLICATION_NAME = "wf-continuations"


def is_postgres(engine: Engine | Connection) -> bool:
    """Whether the database speaks NOTIFY (PostgreSQL)."""
    return engine.dialect.name == "postgresql"


def notify(conn: Connection, channel: str, payload: str) -> None:
    """Send a wake-up inside `conn`'s transaction (delivered when it commits)."""
    if is_postgres(conn):
        conn.execute(
            sa.text("SELECT pg_notify(:channel, :payload)"),
            {"channel": channel, "payload": payload},
        )


def workers_listening(engine: Engine) -> int:
    """How many warm workers hold a listening connection to this database now (the
    server's other databases have workers of their own)."""
    if not is_postgres(engine):
        return 0
    query = sa.text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE application_name = :name AND datname = current_database()"
    )
    with engine.connect() as conn:
        return int(conn.execute(query, {"name": WORKER_APPLICATION_NAME}).scalar() or 0)


def listen(url: str, channels: tuple[str, ...] = (COMPLETED_CHANNEL, LAUNCH_CHANNEL)) -> Any:
    """A psycopg2 connection (autocommit) that LISTENs on `channels`, named as a worker's."""
    import psycopg2  # the driver the state database's engine uses for PostgreSQL

    dsn = "postgresql://" + url.split("://", 1)[1]
    conn = psycopg2.connect(dsn, application_name=WORKER_APPLICATION_NAME)
    conn.autocommit = True
    with conn.cursor() as cursor:
        for channel in channels:
            cursor.execute(f"LISTEN {channel}")
    return conn


def received(conn: Any) -> list[tuple[str, str]]:
    """The (channel, payload) pairs that arrived on a listening connection, oldest first."""
    conn.poll()
    found = [(n.channel, n.payload) for n in conn.notifies]
    conn.notifies.clear()
    return found
