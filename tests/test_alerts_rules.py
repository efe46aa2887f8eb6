"""The alert rules (wf_core.alerting): when each condition holds, and that announcing
follows starts and clears only, never the ticks in between."""

from __future__ import annotations

from wf_core import alerting
from wf_core.alerting import (
    AlertSettings,
    Announced,
    RunOutcome,
    StuckStep,
    alert_settings_from_env,
)

S = AlertSettings(failure_min_runs=5, ui_url="http://ui")
NOW = 1_000_000.0


def _runs(workflow: str, failed: int, ok: int, at: float = NOW) -> list[RunOutcome]:
    return [
        RunOutcome(workflow, f"job-{workflow}-{i}", f"run-{workflow}-{i}", i < failed, at=at)
        for i in range(failed + ok)
    ]


def test_failure_rate_needs_enough_runs_and_more_than_the_threshold() -> None:
    assert alerting.failure_rate(_runs("a", 1, 3), NOW, S) == []  # 4 runs: too few
    assert alerting.failure_rate(_runs("a", 1, 4), NOW, S) == []  # 20 %: not above
    [firing] = alerting.failure_rate(_runs("a", 2, 4) + _runs("b", 0, 9), NOW, S)
    assert firing.key == "failure_rate:a" and len(firing.jobs) == 2
    old = _runs("a", 5, 0, at=NOW - S.failure_window - 1)
    assert alerting.failure_rate(old, NOW, S) == []


def test_storage_failures_are_media_providers_or_checkpoint_errors() -> None:
    runs = [
        RunOutcome("a", "j1", "r1", True, provider="cloudinary", at=NOW),
        RunOutcome("a", "j2", "r2", True, error_message="Checkpoint write failed", at=NOW),
        RunOutcome("a", "j3", "r3", True, provider="replicate", at=NOW),
        RunOutcome("a", "j4", "r4", False, provider="local_media", at=NOW),
    ]
    [firing] = alerting.storage_failures(runs, NOW, S)
    assert [job for job, _ in firing.jobs] == ["j1", "j2"]


def test_stuck_steps_breakers_and_queue_growth() -> None:
    stuck = [StuckStep("j1", "r1", "video", NOW - 601), StuckStep("j2", None, "edit", NOW - 10)]
    [firing] = alerting.stuck_steps(stuck, NOW, S)
    assert firing.jobs == (("j1", "r1"),)
    opened = {"replicate/a": NOW - S.breaker_open_after - 1, "replicate/b": NOW - 5}
    assert [f.key for f in alerting.open_breakers(opened, NOW, S)] == ["breaker_open:replicate/a"]
    assert alerting.queue_growing([(NOW - 60, 3), (NOW, 22)], NOW, S) == []
    assert alerting.queue_growing([(NOW - 60, 3), (NOW, 23)], NOW, S)
    assert alerting.queue_growing([(NOW - S.queue_window - 1, 0), (NOW, 50)], NOW, S) == []


def test_one_message_when_a_condition_starts_and_one_when_it_clears() -> None:
    firing = alerting.failure_rate(_runs("a", 3, 2), NOW, S)
    [started] = alerting.transitions({}, firing, NOW, S)
    assert started.kind == "started" and started.subject == "ALERT: a: 60% of runs failed"
    assert "- job job-a-0: http://ui/runs/run-a-0" in started.text
    announced = {started.key: Announced(firing[0].title, NOW)}
    assert alerting.transitions(announced, firing, NOW + 30, S) == []  # still holds
    # Gone for less than clear_after: not cleared yet (it may come straight back).
    assert alerting.transitions(announced, [], NOW + S.clear_after - 1, S) == []
    [cleared] = alerting.transitions(announced, [], NOW + S.clear_after, S)
    assert cleared.kind == "cleared" and cleared.text == "RESOLVED: a: 60% of runs failed"


def test_a_long_job_list_is_cut() -> None:
    [firing] = alerting.failure_rate(_runs("a", 30, 0), NOW, S)
    [message] = alerting.transitions({}, [firing], NOW, S)
    assert message.text.count("- job ") == alerting.JOBS_SHOWN
    assert message.text.endswith("... and 20 more jobs")


def test_settings_from_the_environment() -> None:
    env = {"ALERT_FAILURE_RATE": "0.5", "ALERT_STUCK_STEP_SECONDS": "120",
           "DAGSTER_UI_URL": "https://dagster.internal/"}  # fmt: skip
    settings = alert_settings_from_env(env)
    assert settings.failure_rate == 0.5 and settings.stuck_after == 120
    assert settings.ui_url == "https://dagster.internal"
    assert alert_settings_from_env({}) == AlertSettings()
