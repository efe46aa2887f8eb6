"""Fifty jobs fail on one exhausted quota: at most one probe per cooldown, then all finish."""

from __future__ import annotations

from dataclasses import replace

import dagster as dg

from runtime.instance import write_instance_yaml
from sensors.retry_sensor import PROBE_START_TIMEOUT_SECONDS
from tests.retry_harness import FAST, JUST_BEFORE, RetryHarness
from wf_core.specs import WorkflowSpec

JOBS = 50
# Cooldowns 1, 2, 4 s, then capped at 4 s.
SETTINGS = replace(FAST, quota_cooldown=1.0, quota_cooldown_cap=4.0)
SPEC = WorkflowSpec.model_validate(
    {
        "id": "quick-video",
        "name": "Quick video",
        "description": "upload then video",
        "category": "test",
        "default_prompts": {"video": "zoom"},
        "supported_models": {"video": ["kling/v1.6"]},
        "steps": [
            {"name": "upload", "type": "input", "kind": "input_upload", "description": "in"},
            {
                "name": "video",
                "type": "generation",
                "kind": "image_to_video",
                "description": "out",
                "default_model": "kling/v1.6",
                "max_attempts": 10,
            },
        ],
        "estimated_duration_seconds": 10,
        "credits_cost": 1,
    }
)


def _probe_after_cooldown(harness: RetryHarness, cooldown: float) -> dg.RunRequest:
    """No job goes until `cooldown` after the breaker (re)opened, which is now; then one probe."""
    reopen_at = harness.clock() + cooldown  # computed as the breaker does: exact, no drift
    harness.clock.advance_to(reopen_at - JUST_BEFORE)
    assert harness.tick() == [], "a job relaunched before the quota cooldown ended"
    harness.clock.advance_to(reopen_at)
    requests = harness.tick()
    assert len(requests) == 1, f"{len(requests)} jobs relaunched at once"
    assert requests[0].tags["wf/quota_probe"] == "local/kling/v1.6"
    return requests[0]


def test_fifty_jobs_one_exhausted_quota(tmp_path, bench) -> None:
    home = tmp_path / "home"
    write_instance_yaml(home, pg_url="")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        harness = RetryHarness(instance, bench, {SPEC.id: SPEC}, SETTINGS)
        bench.set_faults({"kling/v1.6": {"error_type": "quota_exceeded"}})
        jobs = [harness.start(SPEC) for _ in range(JOBS)]
        assert {harness.state(SPEC, j).status for j in jobs} == {"pending_retry"}
        # The first tick sees fifty quota failures: the breaker opens, no job goes.
        assert harness.tick() == []

        # While the quota stays exhausted: one probe per cooldown, each failed probe
        # doubling it (1, 2, then 4 s, the cap), never two in flight.
        for index, cooldown in enumerate((1.0, 2.0, 4.0, 4.0)):
            probe = _probe_after_cooldown(harness, cooldown)
            if index == 0:
                # Until its start times out, nothing else goes while the probe is in flight.
                harness.clock.advance(PROBE_START_TIMEOUT_SECONDS - 1)
                assert harness.tick() == [], "a second job went while the probe was in flight"
            assert not harness.execute(probe).success
            # The tick that sees the failed probe reopens the breaker from now.
            assert harness.tick() == []

        # The quota comes back: the next probe gets through and releases the rest at once.
        bench.set_faults({})
        probe = _probe_after_cooldown(harness, SETTINGS.quota_cooldown_cap)
        assert harness.execute(probe).success
        released = harness.tick()
        assert len(released) == JOBS - 1
        assert not any("wf/quota_probe" in r.tags for r in released)
        for request in released:
            assert harness.execute(request).success
        assert {harness.state(SPEC, j).status for j in jobs} == {"completed"}
        assert harness.tick() == []

        for job_id in jobs:
            assert harness.materializations(SPEC, "upload", job_id) == 1
            assert harness.materializations(SPEC, "video", job_id) == 1
        uploads_called = [c for c in bench.calls() if c["task"] != "image_to_video"]
        assert uploads_called == []
        successes = {c["job_id"] for c in bench.calls()} & set(jobs)
        assert successes == set(jobs)
