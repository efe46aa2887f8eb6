"""Fifty jobs fail on one exhausted quota: at most one probe per cooldown, then all finish."""

from __future__ import annotations

import time

import dagster as dg

from runtime.instance import write_instance_yaml
from tests.retry_harness import FAST, RetryHarness
from wf_core.specs import WorkflowSpec

JOBS = 50
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


def test_fifty_jobs_one_exhausted_quota(tmp_path, bench) -> None:
    home = tmp_path / "home"
    write_instance_yaml(home, pg_url="")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        harness = RetryHarness(instance, bench, {SPEC.id: SPEC}, FAST)
        bench.set_faults({"kling/v1.6": {"error_type": "quota_exceeded"}})
        jobs = [harness.start(SPEC) for _ in range(JOBS)]
        assert {harness.state(SPEC, j).status for j in jobs} == {"pending_retry"}

        # While the quota stays exhausted: one probe per cooldown, never two in flight.
        probes: list[float] = []
        deadline = time.time() + 8
        while time.time() < deadline:
            requests = harness.tick()
            assert len(requests) <= 1, f"{len(requests)} jobs relaunched at once"
            for request in requests:
                assert request.tags["wf/quota_probe"] == "local/kling/v1.6"
                probes.append(time.time())
                assert not harness.execute(request).success
            time.sleep(0.1)
        gaps = [later - earlier for earlier, later in zip(probes, probes[1:], strict=False)]
        assert 2 <= len(probes) <= 4, probes
        # Cooldowns of 1, 2, 4 s: each gap at least the cooldown then in force.
        for index, gap in enumerate(gaps):
            assert gap >= FAST.quota_cooldown * 2 ** (index + 1) - 0.05, gaps

        # The quota comes back: the next probe gets through and releases the rest.
        bench.set_faults({})
        released: list[dg.RunRequest] = []
        deadline = time.time() + 20
        while len(released) < JOBS - 1 and time.time() < deadline:
            requests = harness.tick()
            if len(requests) == 1 and "wf/quota_probe" in requests[0].tags:
                assert harness.execute(requests[0]).success
            else:
                released.extend(requests)
            time.sleep(0.1)
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
