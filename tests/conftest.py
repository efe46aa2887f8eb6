"""Shared fixtures: offline resources in a temp folder, and instances on SQLite or PostgreSQL."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from resources.local_media import LocalMediaStorage
from resources.local_provider import LocalModelProvider
from resources.state_database import StateDatabase
from runtime.instance import write_instance_yaml
from wf_assets.checkpoints import CheckpointIOManager
from wf_assets.factory import CHECKPOINT_IO_KEY
from wf_core.settings import REPO_ROOT
from wf_core.specs import WorkflowSpec, load_specs
from wf_store.migrations import upgrade
from wf_store.state_db import engine_for

SAMPLE_IMAGE = REPO_ROOT / "samples" / "sample.jpg"
PG_SERVER_URL = os.environ.get("TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def specs() -> dict[str, WorkflowSpec]:
    """The shipped workflow specs."""
    return load_specs(REPO_ROOT / "workflow_specs")


class Workbench:
    """Offline resources rooted in one temp folder, with the provider's call log readable."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.media_dir = root / "media"
        self.checkpoints = root / "checkpoints"
        self.call_log = root / "calls.jsonl"
        self.fault_file = root / "faults.json"

    @property
    def state_db_url(self) -> str:
        """The state database (SQLite in the test's folder), at the newest revision."""
        return migrated(f"sqlite:///{self.root / 'state.db'}")

    def resources(self, **provider_config) -> dict:
        """The resources a workflow job needs."""
        return {
            "predictions": StateDatabase(url=self.state_db_url),
            "model_provider": LocalModelProvider(
                call_log=str(self.call_log), fault_file=str(self.fault_file), **provider_config
            ),
            "media_storage": LocalMediaStorage(media_dir=str(self.media_dir)),
            CHECKPOINT_IO_KEY: CheckpointIOManager(base_url=str(self.checkpoints)),
        }

    def calls(self) -> list[dict]:
        """Every provider call made so far."""
        if not self.call_log.exists():
            return []
        return [json.loads(line) for line in self.call_log.read_text().splitlines()]

    def set_faults(self, faults: dict) -> None:
        """Make matching provider calls fail (see LocalModelProvider.fault_file)."""
        self.fault_file.write_text(json.dumps(faults))


def migrated(url: str) -> str:
    """`url`, its database upgraded to the newest revision as every process's start does
    (once per URL and process; stores never create tables)."""
    engine = engine_for(url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    return url


@pytest.fixture
def bench(tmp_path: Path) -> Workbench:
    """Offline resources in this test's temp folder."""
    return Workbench(tmp_path)


def run_job(
    spec: WorkflowSpec,
    instance: dg.DagsterInstance,
    resources: dict,
    job_id: str | None = None,
    options: dict | None = None,
    source: Path = SAMPLE_IMAGE,
    **kwargs,
) -> dg.ExecuteInProcessResult:
    """Add a job's partition and materialize its whole workflow in process."""
    from wf_assets.factory import build_workflow_assets
    from wf_assets.resume import ensure_partition
    from wf_core.job_ids import new_job_id
    from wf_core.run_config import build_run_config

    job_id = job_id or new_job_id()
    ensure_partition(instance, job_id)
    return dg.materialize(
        build_workflow_assets(spec),
        instance=instance,
        partition_key=job_id,
        resources=resources,
        run_config=build_run_config(spec, options, str(source)),
        raise_on_error=False,
        **kwargs,
    )


def _server_sql(statement: str) -> None:
    """One statement on the server's maintenance connection (CREATE/DROP DATABASE)."""
    import psycopg2

    conn = psycopg2.connect(PG_SERVER_URL)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(statement)
    conn.close()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database on the local server, dropped afterwards."""
    name = f"wf_test_{uuid.uuid4().hex[:12]}"
    _server_sql(f'CREATE DATABASE "{name}"')
    base = PG_SERVER_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        _server_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgres"])
def instance(request, tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    """A real Dagster instance from our own dagster.yaml, on SQLite or PostgreSQL."""
    home = tmp_path / "dagster_home"
    pg = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    write_instance_yaml(home, pg_url=pg or "")
    with dg.DagsterInstance.from_config(str(home)) as inst:
        yield inst
