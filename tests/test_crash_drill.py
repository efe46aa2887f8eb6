"""Drill with the real daemon: SIGKILL a run worker mid-step; the job finishes on its own."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import dagster as dg
import pytest

from runtime.stack import DagsterStack
from tests.conftest import SAMPLE_IMAGE
from wf_assets.asset_keys import asset_key_for
from wf_assets.job_runs import job_run_views, load_job_state
from wf_core import tags as t
from wf_core.job_ids import new_job_id
from wf_core.specs import load_specs

pytestmark = pytest.mark.stack


def _wait(predicate, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _calls(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.timeout(240)
def test_killed_worker_is_noticed_and_the_job_resumes(tmp_path) -> None:
    spec = load_specs()["img-edit-to-video"]
    faults, calls = tmp_path / "faults.json", tmp_path / "calls.jsonl"
    # The video step hangs (once) as if waiting on the provider.
    faults.write_text(json.dumps({"image_to_video": {"delay": 120, "times": 1}}))
    env = {
        "MEDIA_DIR": str(tmp_path / "media"),
        "LOCAL_PROVIDER_FAULTS": str(faults),
        "LOCAL_PROVIDER_CALL_LOG": str(calls),
        "RETRY_BACKOFF_BASE": "0.5",
        "RETRY_BACKOFF_CAP": "1",
    }
    with DagsterStack(tmp_path / "home", env=env) as stack:
        job_id = new_job_id()
        first_run = stack.launch_job(spec, job_id, str(SAMPLE_IMAGE))
        _wait(
            lambda: any(c["task"] == "image_to_video" for c in _calls(calls)),
            60,
            "the video step to start",
        )
        worker = stack.instance.get_run_by_id(first_run).tags[t.WORKER]
        pid = int(worker.rsplit(":", 2)[1])
        os.kill(pid, signal.SIGKILL)

        def finished():
            state = load_job_state(stack.instance, spec, job_id)
            return state if state.status in ("completed", "failed", "cancelled") else None

        state = _wait(finished, 120, "the job to finish on its own")
        assert state.status == "completed"
        runs = job_run_views(stack.instance, job_id)
        crashed = next(r for r in runs if r.run_id == first_run)
        assert crashed.status == "FAILURE"
        assert crashed.tags[t.ERROR_TYPE] == "server_unavailable"
        assert crashed.tags[t.FAILED_STEP] == "video_generation"
        retry = runs[0]
        assert retry.status == "SUCCESS"
        assert retry.tags[t.PARENT_RUN] == first_run
        assert retry.tags[t.LAUNCHED_BY] == "retry_sensor" and retry.attempt == 2
        assert state.attempts == {"video_generation": 1}
        # Steps 1-2 were not re-run: one image edit call, one materialization each.
        assert [c["task"] for c in _calls(calls)] == [
            "image_edit",
            "image_to_video",
            "image_to_video",
        ]
        for step in ("upload", "image_edit"):
            records = stack.instance.fetch_materializations(
                dg.AssetRecordsFilter(
                    asset_key=asset_key_for(spec, step), asset_partitions=[job_id]
                ),
                limit=10,
            ).records
            assert [r.run_id for r in records] == [first_run]
