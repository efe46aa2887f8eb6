"""The job read model on the production shape (tests/live_rig.py: PostgreSQL, the bridge
under gunicorn, the signing Replicate fake): after a mixed run (completed, failed,
retried, cancelled and parked jobs) the bridge's documents, read from the rows, equal
those GraphQL gives; a rebuild from the event log equals the live rows, row by row; and
the rebuild command writes nothing, or restores a row that was lost."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from bridge_api.dagster_client.gateway import DagsterGateway
from bridge_api.jobs.execution_view import execution_view
from runtime.read_model import record_from_instance
from tests.fakes.replicate_server import Script
from tests.live_rig import BASE, Rig, final, live_rig, parked, started, wait_for
from wf_core.retry_policy import retry_settings_from_env
from wf_core.settings import REPO_ROOT
from wf_core.specs import load_specs
from wf_store.job_rows import JobRows, default_settings, stored_specs
from wf_store.state_db import engine_for

pytestmark = [pytest.mark.stack, pytest.mark.timeout(900)]
ATTEMPTS = 5  # reads of a live value that may move between two reads of it


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with live_rig(tmp_path_factory) as running:
        yield running


@pytest.fixture(scope="module")
def rows(rig: Rig) -> Iterator[JobRows]:
    engine = engine_for(rig.stack.state_db_url)
    yield JobRows(engine, stored_specs(engine), default_settings())
    engine.dispose()


def _created(rig: Rig, job_id: str, step: str) -> None:
    """Until the job's `step` prediction exists at the provider."""
    wait_for(
        lambda: any(r.step == step and r.prediction_id for r in rig.store.for_job(job_id)),
        120,
        f"{step} created for {job_id}",
    )


def _start(rig: Rig, script: Script) -> str:
    rig.fake.script = script
    job_id = started(rig, BASE)["job_id"]
    _created(rig, job_id, "image_edit")
    return job_id


@pytest.fixture(scope="module")
def jobs(rig: Rig) -> dict[str, str]:
    """One job of each kind, the parked one still waiting at its provider."""
    retry = "CUDA out of memory, please retry"
    kinds = {
        "retried": _start(rig, Script(seconds=3, outcome="failed", error=retry)),
        "failed": _start(rig, Script(seconds=3, outcome="failed", error="NSFW content")),
        "completed": _start(rig, Script(seconds=3)),
        "cancelled": _start(rig, Script(seconds=30)),
    }
    rig.fake.script = Script(seconds=3)
    parked(rig, [kinds["cancelled"]], "image_edit")
    response = httpx.post(f"{rig.bridge}/workflows/cancel/{kinds['cancelled']}", timeout=60)
    assert response.status_code == 200, response.text
    docs = final(rig, list(kinds.values()), 300)
    assert {kind: docs[job_id]["status"] for kind, job_id in kinds.items()} == {
        "retried": "completed",
        "failed": "failed",
        "completed": "completed",
        "cancelled": "cancelled",
    }
    assert docs[kinds["retried"]]["retry_count"] == 1
    kinds["parked"] = _start(rig, Script(seconds=600))
    parked(rig, [kinds["parked"]], "image_edit")
    return kinds


def _graphql_document(rig: Rig, job_id: str) -> dict:
    """The document as the bridge made it before the read model: GraphQL + the store."""
    specs = load_specs(rig.specs)
    snapshot = DagsterGateway(rig.stack.graphql_url, timeout=60).snapshot(job_id, specs)
    spec = specs[BASE]
    return execution_view(spec, snapshot, retry_settings_from_env(), rig.store.for_job(job_id))


def _served_document(rig: Rig, job_id: str) -> dict:
    response = httpx.get(f"{rig.bridge}/workflows/execution/{job_id}", timeout=60)
    assert response.status_code == 200, response.text
    body = response.json()
    body.pop("spec_version")
    return body


def _live(rows: JobRows, job_id: str) -> dict:
    row = rows.get(job_id)
    assert row is not None, f"no row for {job_id}"
    return {k: v for k, v in vars(row).items() if k != "version"}


def _rebuilt(rig: Rig, rows: JobRows, job_id: str) -> dict:
    return rows.columns(record_from_instance(rig.stack.instance, rows, rig.store, job_id))


def _rebuild_command(rig: Rig, *job_ids: str) -> dict[str, int]:
    env = {**rig.stack.env, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "runtime.rebuild_read_model", *job_ids],
        env=env,
        cwd=os.getcwd(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    last = done.stdout.strip().splitlines()[-1]
    return {k: int(v) for k, v in (pair.split("=") for pair in last.split())}


def test_the_documents_from_the_rows_equal_those_from_graphql(rig: Rig, jobs) -> None:
    for kind, job_id in jobs.items():
        for _ in range(ATTEMPTS):
            served, expected = _served_document(rig, job_id), _graphql_document(rig, job_id)
            if served == expected:
                break
        assert served == expected, kind
    parked_doc = _served_document(rig, jobs["parked"])
    assert parked_doc["status"] == "running"
    assert parked_doc["checkpoints"]["1"]["provider"]["name"] == "replicate"


def test_the_jobs_list_shows_every_job_from_the_rows(rig: Rig, jobs) -> None:
    body = httpx.get(f"{rig.bridge}/workflows/jobs?limit=100", timeout=60).json()
    statuses = {job["job_id"]: job["status"] for job in body["jobs"]}
    assert {kind: statuses.get(job_id) for kind, job_id in jobs.items()} == {
        "retried": "completed",
        "failed": "failed",
        "completed": "completed",
        "cancelled": "cancelled",
        "parked": "running",
    }


def test_a_rebuild_equals_the_live_rows(rig: Rig, rows: JobRows, jobs) -> None:
    for kind, job_id in jobs.items():
        for _ in range(ATTEMPTS):
            live, rebuilt = _live(rows, job_id), _rebuilt(rig, rows, job_id)
            if live == rebuilt:
                break
        assert rebuilt == live, kind
    counts = _rebuild_command(rig)
    assert counts["written"] == 0 and counts["unchanged"] >= len(jobs), counts


def test_the_rebuild_command_restores_a_lost_row(rig: Rig, rows: JobRows, jobs) -> None:
    job_id = jobs["completed"]
    before = _live(rows, job_id)
    rows.delete(job_id)
    assert _rebuild_command(rig, job_id) == {"jobs": 1, "written": 1, "unchanged": 0, "no_runs": 0}
    assert _live(rows, job_id) == before
