"""Job status words derived from runs and checkpoints (the rules the sensor and bridge share)."""

from __future__ import annotations

import pytest

from wf_core import tags as t
from wf_core.job_state import RunView, derive_job_state

ALL = {"upload", "image_edit", "video_generation"}


def _run(status: str, created: float = 1.0, attempt: int = 1, **tags: str) -> RunView:
    base = {t.JOB_ID: "j", t.ATTEMPT: str(attempt)}
    return RunView(f"r{created}", status, {**base, **tags}, created)


RETRYABLE = {t.ERROR_TYPE: "rate_limit", t.RETRYABLE: "true", t.FAILED_STEP: "video_generation"}


@pytest.mark.parametrize(
    "runs,done,status",
    [
        ([], set(), "pending"),
        ([_run("QUEUED")], set(), "pending"),
        ([_run("STARTING")], set(), "pending"),
        ([_run("STARTED")], {"upload"}, "running"),
        ([_run("SUCCESS")], ALL, "completed"),
        ([_run("FAILURE", **RETRYABLE)], {"upload", "image_edit"}, "pending_retry"),
        (
            [_run("FAILURE", **{**RETRYABLE, t.RETRYABLE: "false", t.ERROR_TYPE: "invalid_input"})],
            {"upload"},
            "failed",
        ),
        ([_run("CANCELED")], set(), "cancelled"),
        ([_run("FAILURE")], {"upload"}, "pending_retry"),  # a crash before intake
        ([_run("FAILURE", 1.0, **RETRYABLE), _run("STARTED", 2.0, 2)], {"upload"}, "running"),
        ([_run("SUCCESS")], {"upload"}, "failed"),
    ],
)
def test_status(specs, runs, done, status) -> None:
    assert derive_job_state(specs["img-edit-to-video"], runs, done).status == status


@pytest.mark.parametrize("runs", [[], [_run("FAILURE", **RETRYABLE)], [_run("STARTED")]])
def test_cancel_mark_wins(specs, runs) -> None:
    state = derive_job_state(specs["img-edit-to-video"], runs, {"upload"}, cancelled=True)
    assert state.status == "cancelled" and not state.can_retry


def test_attempts_and_max(specs) -> None:
    spec = specs["style-transfer-video"]  # video: max_attempts 3
    tags = {**RETRYABLE, t.FAILED_STEP: "video"}
    runs = [_run("FAILURE", float(i), i, **tags) for i in (1, 2)]
    state = derive_job_state(spec, runs, {"upload", "style", "upscale"})
    assert state.status == "pending_retry" and state.attempts == {"video": 2}
    assert state.retry_count == 1 and state.can_retry
    runs.append(_run("FAILURE", 3.0, 3, **tags))
    state = derive_job_state(spec, runs, {"upload", "style", "upscale"})
    assert state.status == "failed" and state.max_attempts_exceeded
    assert state.error["message"].startswith("Maximum retry attempts exceeded")
    assert state.next_steps == ["video"] and state.can_retry
