"""A manual retry and the retry sensor's relaunch of the same attempt: one of them works.

Both launchers read the same latest attempt and ask for the next one; whichever
run was created first is the attempt, and the other stops before its first step.
Played in both orders on a real instance, with the real sensor and guard.
"""

from __future__ import annotations

import dagster as dg
import pytest

from tests.retry_harness import RetryHarness
from wf_assets.factory import build_workflow_assets
from wf_core import tags as t
from wf_core.control import plan_manual_retry


@pytest.fixture
def harness(instance, bench, specs) -> RetryHarness:
    return RetryHarness(instance, bench, specs)


def _sensor_request(harness: RetryHarness, spec, job_id: str) -> dg.RunRequest:
    requests = [r for r in harness.tick_when_due(spec, job_id) if r.tags[t.JOB_ID] == job_id]
    assert len(requests) == 1, "the sensor did not ask for the retry once its backoff passed"
    return requests[0]


def _manual_retry(harness: RetryHarness, spec, job_id: str, state) -> dg.ExecuteInProcessResult:
    """What the bridge's POST /workflows/retry launches, run in process."""
    parent = harness.instance.get_run_by_id(state.latest.run_id)
    plan = plan_manual_retry(spec, state, parent.run_config)
    return dg.materialize(
        build_workflow_assets(spec),
        instance=harness.instance,
        partition_key=job_id,
        selection=[dg.AssetKey([spec.id, step]) for step in plan.steps],
        run_config=plan.run_config,
        tags=plan.tags,
        resources=harness.resources(),
        raise_on_error=False,
    )


@pytest.mark.parametrize("first", ["manual", "sensor"])
def test_one_attempt_one_working_run(harness, bench, specs, first) -> None:
    spec = specs["img-edit-to-video"]
    bench.set_faults({"image_edit": {"error_type": "server_unavailable", "times": 1}})
    job_id = harness.start(spec)
    state = harness.state(spec, job_id)
    assert state.status == "pending_retry"
    request = _sensor_request(harness, spec, job_id)  # the sensor has decided; its run not made yet
    if first == "manual":
        winner = _manual_retry(harness, spec, job_id, state)
        loser = harness.execute(request)
    else:
        winner = harness.execute(request)
        loser = _manual_retry(harness, spec, job_id, state)
    assert winner.success and not loser.success
    stopped = harness.instance.get_run_by_id(loser.run_id)
    assert stopped.tags[t.STOPPED] == "duplicate"
    assert stopped.tags[t.SUPERSEDED_BY] == winner.run_id
    assert stopped.tags[t.ATTEMPT] == harness.instance.get_run_by_id(winner.run_id).tags[t.ATTEMPT]
    assert harness.state(spec, job_id).status == "completed"
    assert harness.state(spec, job_id).latest.run_id == winner.run_id
    tasks = [c["task"] for c in bench.calls()]
    assert tasks.count("image_edit") == 2 and tasks.count("image_to_video") == 1
    for step in ("upload", "image_edit", "video_generation"):
        assert harness.materializations(spec, step, job_id) == 1
    # The stopped duplicate is nothing the sensor retries.
    assert [r for r in harness.tick() if r.tags[t.JOB_ID] == job_id] == []
