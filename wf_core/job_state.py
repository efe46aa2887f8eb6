"""A job's state, derived from its runs and its checkpoints: one rule set for all readers.

The retry sensor reads runs from the instance, the bridge reads them over GraphQL;
both turn them into `RunView`s and call `derive_job_state`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from wf_core import tags as t
from wf_core.specs import WorkflowSpec

ACTIVE = {"QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING"}
WAITING_TO_START = {"QUEUED", "NOT_STARTED", "STARTING"}
# Active and not already being stopped: what a cancel terminates.
STOPPABLE = ACTIVE - {"CANCELING"}
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}
MAX_ATTEMPTS_MESSAGE = "Maximum retry attempts exceeded"


@dataclass(frozen=True)
class RunView:
    """What the state rules need of one run, however it was read."""

    run_id: str
    status: str
    tags: dict[str, str]
    created_at: float
    failure: dict[str, Any] | None = None

    @property
    def attempt(self) -> int:
        """The run's attempt number for its job (1 for the first run)."""
        try:
            return int(self.tags.get(t.ATTEMPT, "1"))
        except ValueError:
            return 1

    @property
    def attempt_key(self) -> tuple[int, str]:
        """Which launch of the job this run is: two runs with one key are duplicates.

        Our launchers tag the attempt; a Dagster re-execution is its own launch, and
        so is a run without our tag (an operator's or a test's materialization).
        """
        if t.ATTEMPT not in self.tags:
            return self.attempt, self.run_id
        if t.CONTINUES in self.tags:
            # A continuation finishes one parked prediction: one run per prediction.
            return self.attempt, f"continues:{self.tags[t.CONTINUES]}"
        return self.attempt, self.tags.get(t.DAGSTER_PARENT_RUN, "")

    @property
    def parked_step(self) -> str | None:
        """The step this run left waiting on its provider, if it parked one."""
        return self.tags.get(t.PARKED_STEP) if self.status == "SUCCESS" else None

    @property
    def crashed(self) -> bool:
        """Failed with no record from our step handler: the worker died (until tagged)."""
        return self.status == "FAILURE" and t.ERROR_TYPE not in self.tags and not self.failure

    @property
    def retryable(self) -> bool:
        """Whether the run failed with a retryable error (a crash is one)."""
        return self.tags.get(t.RETRYABLE) == "true" or self.crashed


@dataclass
class JobState:
    """The derived state of one job (API.md's job `status` words)."""

    status: str
    latest: RunView | None
    completed: set[str]
    next_steps: list[str]
    failed_step: str | None = None
    error: dict[str, Any] | None = None
    attempts: dict[str, int] = field(default_factory=dict)
    max_attempts_exceeded: bool = False
    # The step whose prediction runs at the provider while no run of the job is active.
    parked_step: str | None = None

    @property
    def retry_count(self) -> int:
        """How many runs after the first this job has had."""
        return max(0, self.latest.attempt - 1) if self.latest else 0

    @property
    def can_retry(self) -> bool:
        """Whether a manual retry is allowed now."""
        return self.status in ("failed", "pending_retry")


def steps_to_run(spec: WorkflowSpec, completed: set[str]) -> list[str]:
    """Every step without a checkpoint, plus everything downstream of one, in spec order."""
    missing = {s.name for s in spec.steps} - completed
    selected = spec.downstream_of(missing)
    return [s.name for s in spec.steps if s.name in selected]


def counted_runs(runs: list[RunView]) -> list[RunView]:
    """The runs that count for a job, newest first: the first-created run of each attempt.

    Whoever launches a job's next attempt (the bridge, the retry sensor, an operator)
    reads the same latest attempt and asks for the same number; when two ask at once,
    both runs exist. The one created first is the attempt; any later one is a
    duplicate that stops itself before its first step and never counts here.
    """
    first: dict[tuple[int, str], RunView] = {}
    for run in sorted(runs, key=lambda r: (r.created_at, r.run_id)):
        first.setdefault(run.attempt_key, run)
    return sorted(first.values(), key=lambda r: (r.created_at, r.run_id), reverse=True)


def duplicate_of(runs: list[RunView], run_id: str) -> RunView | None:
    """The run that counts instead of `run_id` when `run_id` is a duplicate launch, else None."""
    mine = next((r for r in runs if r.run_id == run_id), None)
    if mine is None:
        return None
    winner = next(r for r in counted_runs(runs) if r.attempt_key == mine.attempt_key)
    return None if winner.run_id == run_id else winner


def failures_per_step(runs: list[RunView]) -> dict[str, int]:
    """How many runs failed at each step: the attempts counted against max_attempts
    (a failure because a dependency was down is not one)."""
    counts: dict[str, int] = {}
    for run in runs:
        step = run.tags.get(t.FAILED_STEP)
        if run.tags.get(t.DEPENDENCY_OUTAGE):
            continue  # the step never had its chance: a dependency was down
        if run.status == "FAILURE" and step:
            counts[step] = counts.get(step, 0) + 1
    return counts


def derive_job_state(
    spec: WorkflowSpec, runs: list[RunView], completed: set[str], cancelled: bool = False
) -> JobState:
    """The job's status from its runs (any order), checkpointed steps and cancel mark."""
    ordered = counted_runs(runs)
    latest = ordered[0] if ordered else None
    remaining = steps_to_run(spec, completed)
    attempts = failures_per_step(ordered)
    state = JobState("pending", latest, set(completed), remaining, attempts=attempts)
    if latest is None:
        state.status = "cancelled" if cancelled else "completed" if not remaining else "pending"
        return state
    if cancelled or latest.status in ("CANCELED", "CANCELING"):
        state.status = "cancelled"
    elif latest.status in ACTIVE:
        # A continuation waiting for its turn finishes a step that already ran: running.
        waiting = latest.status in WAITING_TO_START and t.CONTINUES not in latest.tags
        state.status = "pending" if waiting else "running"
    elif not remaining:
        state.status = "completed"
    elif latest.parked_step and latest.parked_step in remaining:
        # Its step waits on the provider; the continuation run takes over from there.
        state.status = "running"
        state.parked_step = latest.parked_step
    elif latest.status == "FAILURE":
        _failed(spec, state, latest)
    else:
        # A successful run that left steps without a checkpoint (an operator ran a
        # subset): nothing will run the rest on its own, so the job is failed.
        state.status = "failed"
        state.error = {
            "error_type": "internal",
            "retryable": False,
            "message": "The last run did not produce every step",
        }
    return state


def _failed(spec: WorkflowSpec, state: JobState, latest: RunView) -> None:
    failure = dict(latest.failure or {})
    step = latest.tags.get(t.FAILED_STEP) or failure.get("step") or state.next_steps[0]
    default_type = "server_unavailable" if latest.crashed else "internal"
    failure.setdefault("error_type", latest.tags.get(t.ERROR_TYPE, default_type))
    failure.setdefault("retryable", latest.retryable)
    failure.setdefault("message", latest.tags.get(t.ERROR_MESSAGE, "The run failed"))
    failure.setdefault("step", step)
    if latest.tags.get(t.RETRY_AT):
        failure.setdefault("retry_at", latest.tags[t.RETRY_AT])
    state.failed_step = step
    state.error = failure
    max_attempts = spec.step(step).max_attempts if step in {s.name for s in spec.steps} else 1
    if latest.retryable and latest.tags.get(t.RETRY_STATE) != t.RETRY_EXHAUSTED:
        if state.attempts.get(step, 0) < max_attempts:
            state.status = "pending_retry"
            return
        state.max_attempts_exceeded = True
        failure["message"] = f"{MAX_ATTEMPTS_MESSAGE}: {failure['message']}"
    elif latest.tags.get(t.RETRY_STATE) == t.RETRY_EXHAUSTED:
        state.max_attempts_exceeded = True
        failure["message"] = f"{MAX_ATTEMPTS_MESSAGE}: {failure['message']}"
    state.status = "failed"
