"""Run tags: the names we use, so that runs can be filtered cheaply by job and failure."""

from __future__ import annotations

from wf_core.errors import FailureRecord

PARTITION = "dagster/partition"
JOB_ID = "wf/job_id"
WORKFLOW = "wf/workflow"
USER = "wf/user"
ATTEMPT = "wf/attempt"
PARENT_RUN = "wf/parent_run"
LAUNCHED_BY = "wf/launched_by"

ERROR_TYPE = "wf/error_type"
RETRYABLE = "wf/retryable"
FAILED_STEP = "wf/failed_step"
RETRY_AT = "wf/retry_at"
FAILED_AT = "wf/failed_at"
PROVIDER = "wf/provider"
MODEL = "wf/model"
KEY_FINGERPRINT = "wf/key_fingerprint"
ERROR_MESSAGE = "wf/error_message"

# Set by the retry sensor on a failed run: where that failure stands.
RETRY_STATE = "wf/retry_state"
RETRY_WAITING = "waiting"
RETRY_DONE = "done"
RETRY_EXHAUSTED = "exhausted"

WORKER = "wf/worker"
# A run executed in the warm continuation worker (sensors/continuations.py), never in a
# process of its own: "continuation" (it continues a completed prediction), "launch" (the
# run coordinator handed it over, no worker has taken it yet), "taken" (a worker has).
# The launcher does not signal such a run's process to cancel it: its steps stop at
# their next start (wf_assets/step_guard.py).
WARM = "wf/warm"
WARM_VALUES = ("continuation", "launch", "taken")

# The cancel mark: an asset observation on the job's first step whose text has this.
CANCEL_MARKER = "(wf/cancelled)"
# A unique id the bridge gives each launch, so a launch whose answer was lost can be found.
LAUNCH_ID = "wf/launch_id"
# Set on a run that stopped itself before doing any work: "cancelled" (the job carries
# the cancel mark) or "duplicate" (another run of the same attempt came first).
STOPPED = "wf/stopped"
SUPERSEDED_BY = "wf/superseded_by"
# Set on a run that parked a step: the step waiting on its provider, and the intent id
# of its prediction (wf_store.predictions). The job is running while they stand.
PARKED_STEP = "wf/parked_step"
PARKED_PREDICTION = "wf/parked_prediction"
# Set on a continuation run: the intent id of the completed prediction it finishes.
CONTINUES = "wf/continues"
# Dagster's queue priority: continuations of waiting jobs go before new jobs.
PRIORITY = "dagster/priority"
CONTINUATION_PRIORITY = "10"
# Dagster's own tag on a re-execution launched from its UI.
DAGSTER_PARENT_RUN = "dagster/parent_run_id"
# The process that launched the run (`host:pid:start`: the daemon, with the prewarmed
# launcher): a STARTING run whose launcher is gone was never handed to a worker.
LAUNCHER = "wf/launcher"
# The spec version a job runs on (a digest; see wf_store.spec_versions).
SPEC_VERSION = "wf/spec_version"
# Set on a run that failed because a dependency (state database, Redis, media storage,
# the network) was down: retried at its retry time, not counted against max_attempts.
DEPENDENCY_OUTAGE = "wf/dependency_outage"
# Set on a run launched only to end a job its code can no longer continue: the reason.
END_REASON = "wf/end_reason"


def job_tags(
    workflow_id: str,
    job_id: str,
    user: str,
    launched_by: str,
    attempt: int = 1,
    parent_run: str | None = None,
) -> dict[str, str]:
    """The tags every run of a job carries. Each is set here on purpose, never copied."""
    tags = {
        PARTITION: job_id,
        JOB_ID: job_id,
        WORKFLOW: workflow_id,
        USER: user,
        LAUNCHED_BY: launched_by,
        ATTEMPT: str(attempt),
    }
    if parent_run:
        tags[PARENT_RUN] = parent_run
    return tags


def cancel_description(user: str) -> str:
    """The observation text that marks a job cancelled."""
    return f"Job cancelled by {user} {CANCEL_MARKER}"


def is_cancel_mark(description: str | None) -> bool:
    """Whether an observation's text is the cancel mark."""
    return CANCEL_MARKER in (description or "")


def cancel_mark_path(workflow_id: str, first_step: str) -> list[str]:
    """The asset that carries a job's cancel mark: its workflow's first step."""
    return [workflow_id, first_step]


def failure_tags(
    record: FailureRecord,
    failed_at: str,
    retry_at: str | None,
    key_fingerprint: str | None = None,
) -> dict[str, str]:
    """The tags a failed step adds to its run: enough for the retry sensor to decide."""
    tags = {
        ERROR_TYPE: record.error_type,
        RETRYABLE: "true" if record.retryable else "false",
        FAILED_STEP: record.step,
        FAILED_AT: failed_at,
        ERROR_MESSAGE: record.message[:500],
    }
    optional = {
        RETRY_AT: retry_at,
        PROVIDER: record.provider,
        MODEL: record.model,
        KEY_FINGERPRINT: key_fingerprint,
    }
    tags.update({key: value for key, value in optional.items() if value})
    return tags
