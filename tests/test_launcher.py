"""The prewarmed launcher through the real daemon: fork, terminate, health check, reload.

Also the crash drill: SIGKILL a run worker mid-step; the job finishes on its own.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml

from runtime.launcher import PrewarmedRunLauncher
from runtime.stack import DagsterStack
from tests.conftest import SAMPLE_IMAGE
from wf_assets.asset_keys import asset_key_for
from wf_assets.job_runs import job_run_views, load_job_state
from wf_core import tags as t
from wf_core.job_ids import new_job_id
from wf_core.settings import REPO_ROOT
from wf_core.specs import load_spec

pytestmark = pytest.mark.stack

RELOAD = """mutation($name: String!) {
  reloadRepositoryLocation(repositoryLocationName: $name) { __typename } }"""
TERMINATE = "mutation($id: String!) { terminateRun(runId: $id) { __typename } }"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("launcher")
    specs = root / "specs"
    shutil.copytree(REPO_ROOT / "workflow_specs", specs)
    env = {
        "MEDIA_DIR": str(root / "media"),
        "WORKFLOW_SPECS_DIR": str(specs),
        "LOCAL_PROVIDER_FAULTS": str(root / "faults.json"),
        "LOCAL_PROVIDER_CALL_LOG": str(root / "calls.jsonl"),
        "RETRY_BACKOFF_BASE": "0.5",
        "RETRY_BACKOFF_CAP": "1",
    }
    with DagsterStack(root / "home", env=env) as stack:
        yield stack, root


def _spec(root: Path):
    return load_spec(root / "specs" / "img-edit-to-video.yaml")


def _wait(predicate, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if value := predicate():
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _video_started(root: Path) -> bool:
    calls = root / "calls.jsonl"
    return calls.exists() and '"image_to_video"' in calls.read_text()


def _start_hanging_job(stack, root, job_id: str | None = None) -> str:
    (root / "calls.jsonl").unlink(missing_ok=True)
    (root / "faults.json").write_text(json.dumps({"image_to_video": {"delay": 60, "times": 1}}))
    run_id = stack.launch_job(_spec(root), job_id or new_job_id(), SAMPLE_IMAGE)
    _wait(lambda: _video_started(root), 60, "the video step")
    return run_id


def _calls(root: Path, job_id: str) -> list[str]:
    lines = (root / "calls.jsonl").read_text().splitlines()
    return [call["task"] for call in map(json.loads, lines) if call["job_id"] == job_id]


def test_run_is_forked_from_the_zygote(lab) -> None:
    stack, root = lab
    (root / "faults.json").write_text("{}")
    run_id = stack.launch_job(_spec(root), new_job_id(), SAMPLE_IMAGE)
    assert stack.wait_for_run(run_id, 60) == dg.DagsterRunStatus.SUCCESS
    messages = [
        e.dagster_event.message or "" for e in stack.instance.all_logs(run_id) if e.dagster_event
    ]
    assert any("PrewarmedRunLauncher" in m for m in messages), messages
    assert isinstance(stack.instance.run_launcher, PrewarmedRunLauncher)


def test_terminate_cancels_a_running_run(lab) -> None:
    stack, root = lab
    run_id = _start_hanging_job(stack, root)
    stack.graphql(TERMINATE, {"id": run_id})
    assert stack.wait_for_run(run_id, 30) == dg.DagsterRunStatus.CANCELED


@pytest.mark.timeout(240)
def test_a_killed_worker_is_seen_dead_and_the_job_resumes(lab) -> None:
    """The crash drill: the health check and the retry sensor see the dead worker."""
    stack, root = lab
    spec, job_id = _spec(root), new_job_id()
    run_id = _start_hanging_job(stack, root, job_id)
    run = stack.instance.get_run_by_id(run_id)
    launcher = stack.instance.run_launcher
    assert launcher.check_run_worker_health(run).status.value == "RUNNING"
    os.kill(int(run.tags[t.WORKER].rsplit(":", 2)[1]), signal.SIGKILL)
    _wait(
        lambda: launcher.check_run_worker_health(run).status.value == "FAILED",
        10,
        "the health check to fail",
    )

    def finished():
        state = load_job_state(stack.instance, spec, job_id)
        return state if state.status in ("completed", "failed", "cancelled") else None

    # The retry sensor (or run monitoring) fails the run, and the sensor resumes the job.
    state = _wait(finished, 120, "the job to finish on its own")
    assert state.status == "completed"
    runs = job_run_views(stack.instance, job_id)
    crashed = next(r for r in runs if r.run_id == run_id)
    assert crashed.status == "FAILURE"
    assert crashed.tags[t.ERROR_TYPE] == "server_unavailable"
    assert crashed.tags[t.FAILED_STEP] == "video_generation"
    retry = runs[0]
    assert retry.status == "SUCCESS"
    assert retry.tags[t.PARENT_RUN] == run_id
    assert retry.tags[t.LAUNCHED_BY] == "retry_sensor" and retry.attempt == 2
    assert state.attempts == {"video_generation": 1}
    # Steps 1-2 were not re-run: one image edit call, one materialization each. The
    # video's create had reached the provider: the retry found it instead of paying again.
    assert _calls(root, job_id) == ["image_edit", "image_to_video"]
    for step in ("upload", "image_edit"):
        records = stack.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=asset_key_for(spec, step), asset_partitions=[job_id]),
            limit=10,
        ).records
        assert [r.run_id for r in records] == [run_id]


def test_a_changed_spec_reaches_new_runs(lab) -> None:
    stack, root = lab
    (root / "faults.json").write_text("{}")
    path = root / "specs" / "img-edit-to-video.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["default_prompts"]["image_edit"] = "A brand new default prompt"
    path.write_text(yaml.safe_dump(raw))
    stack.graphql(RELOAD, {"name": "workflows"})
    job_id = new_job_id()
    run_id = stack.launch_job(_spec(root), job_id, SAMPLE_IMAGE)
    assert stack.wait_for_run(run_id, 60) == dg.DagsterRunStatus.SUCCESS
    record = stack.instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=asset_key_for(_spec(root), "image_edit"), asset_partitions=[job_id]
        ),
        limit=1,
    ).records[0]
    checkpoint = record.asset_materialization.metadata["checkpoint"].value
    assert checkpoint["output"]["prompt"] == "A brand new default prompt"
