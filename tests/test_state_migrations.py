"""The state database's Alembic migrations: applied once, and matching tables.py."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from wf_store.migrations import VERSION_TABLE, current_revision, upgrade
from wf_store.migrations.tables import metadata
from wf_store.predictions import engine_for


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request, tmp_path):
    url = (
        request.getfixturevalue("pg_url")
        if request.param == "postgres"
        else f"sqlite:///{tmp_path / 'state.db'}"
    )
    engine = engine_for(url)
    yield engine
    engine.dispose()


def test_upgrade_makes_exactly_the_tables_of_tables_py(engine) -> None:
    assert current_revision(engine) is None
    upgrade(engine)
    upgrade(engine)  # once per process: a no-op
    assert current_revision(engine) == "0002"
    with engine.connect() as conn:
        ours = {
            "version_table": VERSION_TABLE,
            # Other tables share the database (the engine's older ones, the SQLite lock).
            "include_name": lambda name, kind, _: kind != "table" or name in metadata.tables,
        }
        context = MigrationContext.configure(conn, opts=ours)
        differences = compare_metadata(context, metadata)
    assert differences == []
