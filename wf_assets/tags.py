"""Run tags: the names we use, so that runs can be filtered cheaply by job and failure."""

from __future__ import annotations

from wf_assets.errors import FailureRecord

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


def failure_tags(record: FailureRecord, retry_at: str | None) -> dict[str, str]:
    """The tags a failed step adds to its run."""
    tags = {
        ERROR_TYPE: record.error_type,
        RETRYABLE: "true" if record.retryable else "false",
        FAILED_STEP: record.step,
    }
    if retry_at:
        tags[RETRY_AT] = retry_at
    return tags
