"""The retry sensor against a real instance, one error type and condition at a time.

The sensor's clock is a fake the tests move: no test sleeps for a backoff or a reset.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.retry_harness import RetryHarness
from wf_assets.asset_keys import asset_key_for
from wf_core import tags as t
from wf_core.settings import REPO_ROOT
from wf_core.times import iso_to_epoch_seconds

SETTLED = ("completed", "failed", "cancelled")


@pytest.fixture
def harness(instance, bench, specs) -> RetryHarness:
    return RetryHarness(instance, bench, specs)


def _run_until_settled(harness: RetryHarness, spec, job_id: str, limit: int = 10) -> str:
    """Tick, launch what is asked for, and move the clock to each scheduled retry."""
    for _ in range(limit):
        for request in harness.tick():
            harness.execute(request)
        status = harness.state(spec, job_id).status
        if status in SETTLED:
            return status
        assert status == "pending_retry", status
        for request in harness.tick_when_due(spec, job_id):
            harness.execute(request)
    raise AssertionError(f"job still {harness.state(spec, job_id).status}")


@pytest.mark.parametrize(
    "module", ["sensors/retry_sensor.py", "sensors/crash_detector.py", "wf_core/circuit_breaker.py"]
)
def test_the_sensor_and_breaker_read_no_clock_of_their_own(module: str) -> None:
    tree = ast.parse(Path(REPO_ROOT / module).read_text())
    calls = {
        ast.unparse(node.func)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
    }
    wall = {"time.time", "time.monotonic", "datetime.now", "datetime.utcnow", "date.today"}
    assert calls & wall == set(), f"{module} reads the clock; take `now` or a clock instead"


def test_rate_limit_waits_for_its_reset_time(harness, bench, specs) -> None:
    spec = specs["style-transfer-video"]
    bench.set_faults(
        {"image_to_video": {"error_type": "rate_limit", "retry_after": 30, "times": 1}}
    )
    job_id = harness.start(spec)
    state = harness.state(spec, job_id)
    assert state.status == "pending_retry" and state.failed_step == "video"
    reset = iso_to_epoch_seconds(state.latest.tags[t.RETRY_AT])
    assert reset == pytest.approx(iso_to_epoch_seconds(state.latest.tags[t.FAILED_AT]) + 30)
    assert harness.retry_at(spec, job_id) == reset
    assert harness.tick() == [], "retried before the rate limit reset"
    harness.clock.advance_to(reset - 10)
    assert harness.tick() == [], "retried before the rate limit reset"
    requests = harness.tick_when_due(spec, job_id)
    assert len(requests) == 1
    request = requests[0]
    assert [k.path[1] for k in request.asset_selection] == ["video"]
    assert request.tags[t.ATTEMPT] == "2" and request.tags[t.LAUNCHED_BY] == "retry_sensor"
    assert request.tags[t.PARENT_RUN] == state.latest.run_id
    assert harness.execute(request).success
    assert harness.state(spec, job_id).status == "completed"
    assert harness.materializations(spec, "style", job_id) == 1


def test_backoff_for_timeouts_and_server_errors(harness, bench, specs) -> None:
    spec = specs["style-transfer-video"]
    bench.set_faults(
        {
            "image_upscale": {"error_type": "server_unavailable", "times": 2},
            "image_to_video": {"error_type": "timeout", "times": 1},
        }
    )
    job_id = harness.start(spec)
    assert _run_until_settled(harness, spec, job_id) == "completed"
    state = harness.state(spec, job_id)
    assert state.attempts == {"upscale": 2, "video": 1}
    assert state.latest.attempt == 4
    assert [c["task"] for c in bench.calls()].count("image_style") == 1


def test_max_attempts_then_failed(harness, bench, specs) -> None:
    spec = specs["style-transfer-video"]  # video: max_attempts 3
    bench.set_faults({"image_to_video": {"error_type": "server_unavailable"}})
    job_id = harness.start(spec)
    assert _run_until_settled(harness, spec, job_id) == "failed"
    state = harness.state(spec, job_id)
    assert state.attempts["video"] == 3
    assert state.error["message"].startswith("Maximum retry attempts exceeded")
    assert harness.tick() == []
    assert harness.state(spec, job_id).latest.tags[t.RETRY_STATE] == t.RETRY_EXHAUSTED
    assert harness.tick() == []


def test_permanent_errors_are_never_retried(harness, bench, specs) -> None:
    spec = specs["style-transfer-video"]
    bench.set_faults({"image_style": {"error_type": "content_rejected"}})
    job_id = harness.start(spec)
    assert harness.state(spec, job_id).status == "failed"
    assert harness.tick() == [] and harness.tick() == []


def test_invalid_key_waits_until_the_key_is_replaced(instance, bench, specs) -> None:
    spec = specs["style-transfer-video"]
    harness = RetryHarness(instance, bench, specs, api_key="old-key")
    bench.set_faults({"image_style": {"error_type": "invalid_key"}})
    job_id = harness.start(spec)
    state = harness.state(spec, job_id)
    assert state.status == "pending_retry"
    assert state.latest.tags[t.KEY_FINGERPRINT]
    assert harness.tick() == [] and harness.tick() == []
    harness.provider_config["api_key"] = "new-key"
    bench.set_faults({})
    requests = harness.tick()
    assert len(requests) == 1 and "replaced" in requests[0].tags["wf/retry_reason"]
    assert harness.execute(requests[0]).success


def test_invalid_key_retried_when_the_auth_check_passes(harness, bench, specs) -> None:
    spec = specs["style-transfer-video"]
    bench.set_faults({"image_style": {"error_type": "invalid_key"}})
    job_id = harness.start(spec)
    assert harness.tick() == []
    bench.set_faults({})
    requests = harness.tick()
    assert len(requests) == 1 and "auth check" in requests[0].tags["wf/retry_reason"]
    assert harness.execute(requests[0]).success
    assert harness.state(spec, job_id).status == "completed"


def test_fallback_model_at_once_on_quota(harness, bench, specs) -> None:
    spec = specs["img-edit-to-video"]  # video_generation: minimax/video-01 -> kling/v1.6
    bench.set_faults({"minimax/video-01": {"error_type": "quota_exceeded"}})
    job_id = harness.start(spec)
    requests = harness.tick()
    assert len(requests) == 1
    config = requests[0].run_config["ops"][spec.op_name("video_generation")]["config"]
    assert config["model"] == "kling/v1.6"
    assert harness.execute(requests[0]).success
    state = harness.state(spec, job_id)
    assert state.status == "completed"
    checkpoint = harness.resources()["checkpoint_io"].read(
        asset_key_for(spec, "video_generation"), job_id
    )
    assert checkpoint["output"]["model_used"] == "kling/v1.6"


def test_cancelled_job_is_not_retried(harness, bench, specs, instance) -> None:
    import dagster as dg

    from wf_assets.cancellation import marker_asset_key
    from wf_core.control import JobStateError, check_cancellable, plan_manual_retry
    from wf_core.tags import cancel_description

    spec = specs["style-transfer-video"]
    bench.set_faults({"image_to_video": {"error_type": "rate_limit", "retry_after": 0.1}})
    job_id = harness.start(spec)
    state = harness.state(spec, job_id)
    due = harness.retry_at(spec, job_id)
    check_cancellable(state)
    # The cancel mark, as the bridge writes it (its run has failed: nothing to stop).
    instance.report_runless_asset_event(
        dg.AssetObservation(
            asset_key=marker_asset_key(spec), partition=job_id, description=cancel_description("u")
        )
    )
    harness.clock.advance_to(due + 1)  # the rate limit has reset: only the cancel stops it
    assert harness.tick() == []
    state = harness.state(spec, job_id)
    assert state.status == "cancelled"
    assert state.latest.tags[t.RETRY_STATE] == t.RETRY_DONE
    with pytest.raises(JobStateError):
        plan_manual_retry(spec, state, None)
    with pytest.raises(JobStateError):
        check_cancellable(state)


def test_completed_job_is_not_retried(harness, specs) -> None:
    spec = specs["style-transfer-video"]
    job_id = harness.start(spec)
    assert harness.state(spec, job_id).status == "completed"
    assert harness.tick() == []


def test_daemon_restart_neither_duplicates_nor_loses(harness, bench, specs) -> None:
    spec = specs["style-transfer-video"]
    bench.set_faults(
        {"image_to_video": {"error_type": "rate_limit", "retry_after": 0.1, "times": 1}}
    )
    job_id = harness.start(spec)
    harness.clock.advance_to(harness.retry_at(spec, job_id))
    cursor_before = harness.cursor
    first = harness.tick()
    assert len(first) == 1
    # The daemon dies before launching: its tick's cursor is never stored.
    harness.cursor = cursor_before
    again = harness.tick()
    assert [r.run_key for r in again] == [first[0].run_key]
    assert harness.execute(again[0]).success
    # After the restart and the launch, nothing is asked for twice.
    assert harness.tick() == []
    assert harness.state(spec, job_id).status == "completed"


def test_no_second_run_while_one_is_active(harness, bench, specs, instance) -> None:
    import dagster as dg

    spec = specs["style-transfer-video"]
    bench.set_faults({"image_to_video": {"error_type": "rate_limit", "retry_after": 0.1}})
    job_id = harness.start(spec)
    due = harness.retry_at(spec, job_id)
    instance.add_run(
        dg.DagsterRun(
            job_name=spec.job_name,
            status=dg.DagsterRunStatus.STARTED,
            tags=t.job_tags(spec.id, job_id, "user-1", "manual_retry", 2),
        )
    )
    harness.clock.advance_to(due + 1)  # the rate limit has reset: only the active run stops it
    assert harness.tick() == []
    assert harness.state(spec, job_id).status == "running"
