"""Parked steps on a real stack: a job waiting on its provider holds no run, and finishes.

A real dagster-webserver and dagster-daemon, the offline provider taking a few seconds
per prediction: each generation step parks (its run ends), the parked-steps sensor
notices the prediction has ended and starts the continuation run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge_api.dagster_client.gateway import DagsterGateway
from runtime.stack import DagsterStack
from wf_assets.job_runs import job_run_views, load_job_state
from wf_core import tags as t
from wf_core.job_ids import new_job_id
from wf_core.settings import REPO_ROOT
from wf_core.specs import WorkflowSpec, load_specs
from wf_store.predictions import CONSUMED, PredictionStore

pytestmark = [pytest.mark.stack, pytest.mark.timeout(240)]

LATENCY = 4.0


@pytest.fixture(scope="module")
def spec() -> WorkflowSpec:
    """A workflow with two generation steps."""
    return load_specs()["img-edit-to-video"]


@pytest.fixture(scope="module")
def calls(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The offline provider's call log (one line per create)."""
    return tmp_path_factory.mktemp("calls") / "calls.jsonl"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, calls: Path) -> Iterator[DagsterStack]:
    """One webserver + daemon; the provider takes LATENCY seconds per prediction."""
    home = tmp_path_factory.mktemp("dagster_home")
    env = {
        "MEDIA_DIR": str(tmp_path_factory.mktemp("media")),
        "LOCAL_PROVIDER_LATENCY": str(LATENCY),
        "LOCAL_PROVIDER_CALL_LOG": str(calls),
    }
    with DagsterStack(home, env=env, timeout=90) as running:
        yield running


def wait_for_job(stack: DagsterStack, spec: WorkflowSpec, job_id: str, timeout: float) -> str:
    """Poll the job's derived state until it is final; its status."""
    deadline = time.monotonic() + timeout
    while True:
        state = load_job_state(stack.instance, spec, job_id)
        if state.status in ("completed", "failed", "cancelled"):
            return state.status
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {state.status} after {timeout:.0f}s")
        time.sleep(0.25)


def test_a_waiting_job_holds_no_run_and_completes(
    stack: DagsterStack, spec: WorkflowSpec, calls: Path
) -> None:
    job_id = new_job_id()
    first = stack.launch_job(spec, job_id, REPO_ROOT / "samples" / "sample.jpg", user="parker")
    assert stack.wait_for_run(first, timeout=60).value == "SUCCESS"
    # The first run stored the upload, created the edit's prediction and ended.
    state = load_job_state(stack.instance, spec, job_id)
    parked = stack.instance.get_run_by_id(first)
    assert parked is not None and parked.tags[t.PARKED_STEP] == "image_edit"
    if state.status == "running":
        assert state.parked_step == "image_edit" or state.latest.run_id != first

    assert wait_for_job(stack, spec, job_id, timeout=120) == "completed"
    runs = sorted(job_run_views(stack.instance, job_id), key=lambda r: r.created_at)
    # upload + submit edit | finish edit + submit video | finish video
    assert [r.status for r in runs] == ["SUCCESS"] * 3
    assert [r.tags.get(t.PARKED_STEP) for r in runs] == ["image_edit", "video_generation", None]
    for continuation in runs[1:]:
        assert continuation.tags[t.PRIORITY] == t.CONTINUATION_PRIORITY
        assert continuation.tags[t.LAUNCHED_BY] == "continuation"
        assert continuation.tags[t.USER] == "parker"
        assert continuation.tags[t.ATTEMPT] == "1"
    made = [json.loads(line) for line in calls.read_text().splitlines()]
    mine = [c["step"] for c in made if c["job_id"] == job_id]
    assert mine == ["image_edit", "video_generation"]
    store = PredictionStore(stack.state_db_url)
    rows = store.for_job(job_id)
    assert [(r.step, r.state, r.provider_status) for r in rows] == [
        ("image_edit", CONSUMED, "succeeded"),
        ("video_generation", CONSUMED, "succeeded"),
    ]
    # The user's job list shows the job once, completed (its continuations are not jobs).
    snapshots, _ = DagsterGateway(stack.graphql_url).jobs_page("parker", 10, None, {spec.id: spec})
    assert [s.job_id for s in snapshots] == [job_id]
