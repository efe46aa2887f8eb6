"""The state database: Alembic makes every table, once, and the result equals the models."""

from __future__ import annotations

import subprocess
import sys

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Engine

from bridge_api.app import create_app
from wf_store.migrations import VERSION_TABLE, alembic_config, current_revision, upgrade
from wf_store.predictions import PredictionStore
from wf_store.schema import metadata
from wf_store.state_db import engine_for, open_state_db, upgrade_at_start
from wf_store.uploads import UploadStore

HEAD = "0004"  # issue 23: wf_jobs (the job read model)
# The tables 0001 and 0002 made; every other one was made by create_all before 0003.
MIGRATED_BEFORE = {
    "wf_idempotency_keys",
    "wf_credit_accounts",
    "wf_credit_ledger",
    "wf_credit_holds",
    "wf_callbacks",
    "wf_callback_deliveries",
}


@pytest.fixture(params=["sqlite", "postgres"])
def url(request, tmp_path) -> str:
    if request.param == "postgres":
        return request.getfixturevalue("pg_url")
    return f"sqlite:///{tmp_path / 'state.db'}"


@pytest.fixture
def engine(url):
    engine = engine_for(url)
    yield engine
    engine.dispose()


def differences(engine: Engine) -> list:
    """What Alembic's autogenerate would change to make the database equal the models."""
    with engine.connect() as conn:
        # Every engine table is named wf_*: an extra or missing one shows up here.
        ours = {
            "version_table": VERSION_TABLE,
            "include_name": lambda name, kind, _: kind != "table" or name.startswith("wf_"),
        }
        return compare_metadata(MigrationContext.configure(conn, opts=ours), metadata)


def table_names(engine: Engine) -> set[str]:
    return {name for name in sa.inspect(engine).get_table_names() if name != VERSION_TABLE}


def upgrade_to(engine: Engine, revision: str) -> None:
    """Apply the migrations up to `revision` only (as a database deployed then had)."""
    with engine.begin() as conn:
        config = alembic_config(engine)
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def test_one_upgrade_of_an_empty_database_makes_every_table_as_the_models_say(engine) -> None:
    assert current_revision(engine) is None
    assert table_names(engine) == set()
    upgrade(engine)
    upgrade(engine)  # once per process: a no-op
    assert current_revision(engine) == HEAD
    assert table_names(engine) == set(metadata.tables)
    assert differences(engine) == []


def test_a_database_made_the_old_way_upgrades_to_the_models(engine) -> None:
    """Deployed at 0002, the other tables made by create_all (and SQLite's old lock table)."""
    upgrade_to(engine, "0002")
    # Tables added after 0003 (wf_jobs, issue 23) were never made by create_all.
    made_later = {"wf_jobs"}
    old_tables = [
        table for name, table in metadata.tables.items() if name not in MIGRATED_BEFORE | made_later
    ]
    metadata.create_all(engine, tables=old_tables)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO wf_spec_versions (digest, workflow_id, body, created_at)"
                " VALUES ('d1', 'wf', '{}', 1.0)"
            )
        )
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("CREATE TABLE wf_migration_lock (x INTEGER)")
    assert current_revision(engine) == "0002"
    upgrade(engine)
    assert current_revision(engine) == HEAD
    assert table_names(engine) == set(metadata.tables)
    assert differences(engine) == []
    with engine.connect() as conn:  # kept, not made anew
        assert conn.execute(sa.text("SELECT digest FROM wf_spec_versions")).scalar_one() == "d1"


def test_an_old_table_missing_an_index_gets_it(engine) -> None:
    upgrade_to(engine, "0002")
    metadata.create_all(engine, tables=[metadata.tables["wf_predictions"]])
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP INDEX ix_wf_predictions_state_updated")
    upgrade(engine)
    assert differences(engine) == []


def test_several_processes_upgrading_at_once_all_succeed(url) -> None:
    """Fresh interpreters upgrading one empty database together, as a bridge's workers, the
    code server and the daemon do at start: each finds it done or does it, none fails."""
    code = (
        "import sys\n"
        "from wf_store.migrations import upgrade\n"
        "from wf_store.state_db import engine_for\n"
        "upgrade(engine_for(sys.argv[1]))\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, url], stderr=subprocess.PIPE)
        for _ in range(3)
    ]
    failures = [proc.stderr.read().decode() for proc in procs if proc.wait(timeout=120) != 0]
    assert failures == []
    engine = engine_for(url)
    try:
        assert current_revision(engine) == HEAD
        assert differences(engine) == []
    finally:
        engine.dispose()


def test_stores_never_create_tables(engine, url) -> None:
    """A store on a database never upgraded fails plainly, and leaves it empty."""
    store = PredictionStore(url, engine=engine)
    with pytest.raises((sa.exc.OperationalError, sa.exc.ProgrammingError)):
        store.count_by_state()
    with pytest.raises((sa.exc.OperationalError, sa.exc.ProgrammingError)):
        UploadStore(engine).get("wf-upload:job1.png")
    assert table_names(engine) == set()


def test_a_database_down_at_start_is_upgraded_on_first_use(tmp_path) -> None:
    """Start never fails on the database; its first use raises while it is down, then
    upgrades it once it answers (the bridge's 503 until then)."""
    path = tmp_path / "state.db"
    path.mkdir()  # a folder: SQLite cannot open it, as a server that does not answer
    url = f"sqlite:///{path}"
    assert upgrade_at_start(url) is False
    app = create_app({"AUTH_MODE": "disabled", "STATE_DB_URL": url})  # starts all the same
    assert app.config["STATE_DB_URL"] == url
    with pytest.raises(sa.exc.OperationalError):
        open_state_db(url)
    path.rmdir()  # the database answers now
    engine = open_state_db(url)
    assert current_revision(engine) == HEAD
    assert differences(engine) == []
