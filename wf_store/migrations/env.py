"""Alembic's environment: always online, on the connection `upgrade` hands over."""

from __future__ import annotations

from alembic import context

from wf_store.migrations import VERSION_TABLE
from wf_store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
