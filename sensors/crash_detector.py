"""Notice run workers that died mid-run, and fail their runs so they can be retried.

Under the default run launcher Dagster's run monitoring cannot check a run
worker's health. Each step records its worker as `host:pid:start` (wf/worker);
a run still STARTED whose worker on this host is gone is failed here, tagged as
a retryable `server_unavailable` crash at its first step without a checkpoint.
"""

from __future__ import annotations

import dagster as dg

from runtime.worker import run_worker_identity, worker_alive
from wf_assets.resume import completed_steps
from wf_core import tags as t
from wf_core.job_state import steps_to_run
from wf_core.specs import WorkflowSpec
from wf_core.times import epoch_seconds_to_iso

# A run that has not yet recorded its worker is given this long to do so.
UNIDENTIFIED_GRACE_SECONDS = 30.0
# A STARTING run whose launcher is gone is given this long for a worker to take it up.
ORPHAN_GRACE_SECONDS = 15.0


def crash_tags(
    instance: dg.DagsterInstance,
    spec: WorkflowSpec | None,
    job_id: str,
    message: str,
    now: float,
) -> dict[str, str]:
    """Failure tags for a worker found dead at `now`: retryable, at its first unfinished step."""
    tags = {
        t.ERROR_TYPE: "server_unavailable",
        t.RETRYABLE: "true",
        t.FAILED_AT: epoch_seconds_to_iso(now, timespec="auto"),
        t.ERROR_MESSAGE: message,
    }
    if spec is not None:
        remaining = steps_to_run(spec, completed_steps(instance, spec, job_id))
        if remaining:
            tags[t.FAILED_STEP] = remaining[0]
    return tags


def fail_dead_runs(
    instance: dg.DagsterInstance, specs: dict[str, WorkflowSpec], log, now: float
) -> list[str]:
    """Fail every STARTED workflow run whose worker is dead at `now`, and every STARTING
    one whose launcher died before handing it to a worker; returns their run ids."""
    failed = []
    records = instance.get_run_records(
        filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING])
    )
    for record in records:
        run = record.dagster_run
        spec = specs.get(run.tags.get(t.WORKFLOW, ""))
        if spec is None or t.JOB_ID not in run.tags:
            continue
        check = _fail_if_dead if run.status == dg.DagsterRunStatus.STARTED else _fail_if_orphaned
        try:
            if check(instance, spec, record, log, now):
                failed.append(run.run_id)
        except Exception:
            # One run that cannot be checked must not stop the check of every other.
            log.exception(f"crash check of run {run.run_id} failed; skipped this tick")
    return failed


def _fail_if_dead(
    instance: dg.DagsterInstance, spec: WorkflowSpec, record, log, now: float
) -> bool:
    run = record.dagster_run
    identity = run_worker_identity(instance, run)
    if identity is None:
        age = now - record.update_timestamp.timestamp()
        if age < UNIDENTIFIED_GRACE_SECONDS:
            return False
        # Our own run record started but never showed a worker: treat it as dead
        # only if no RUN_START pid exists either, which run_worker_identity checked.
    elif worker_alive(identity) is not False:
        return False
    message = f"Run worker {identity or '(unknown)'} died mid-run"
    return _fail_as_crash(instance, spec, run, message, now, log)


def _fail_as_crash(instance, spec: WorkflowSpec, run, message: str, now: float, log) -> bool:
    """Fail `run` as a retryable crash at its job's first unfinished step, if it is still
    in the status it was read in; whether it was failed."""
    # The record was read before the liveness check: a worker that finished (or started)
    # the run in between moved it on. Its last status is written now: read it again.
    fresh = instance.get_run_by_id(run.run_id)
    if fresh is None or fresh.status != run.status:
        return False
    instance.add_run_tags(run.run_id, crash_tags(instance, spec, run.tags[t.JOB_ID], message, now))
    instance.report_run_failed(run, message=message)
    log.warning(f"{message}; run {run.run_id} marked failed")
    return True


def _fail_if_orphaned(
    instance: dg.DagsterInstance, spec: WorkflowSpec, record, log, now: float
) -> bool:
    """A STARTING run whose launching process (the daemon, with the prewarmed launcher)
    is gone and which no worker took up: left by the previous life of a restarted
    daemon, it would wait for run monitoring's start timeout (minutes). Failed as a
    crash instead, the retry sensor resumes its job within seconds."""
    run = record.dagster_run
    launcher = run.tags.get(t.LAUNCHER)
    if not launcher or worker_alive(launcher) is not False:
        return False
    if now - record.update_timestamp.timestamp() < ORPHAN_GRACE_SECONDS:
        return False  # a worker forked just before its launcher died may still start it
    if run_worker_identity(instance, run) is not None:
        return False
    message = f"Run launcher {launcher} died before the run started"
    return _fail_as_crash(instance, spec, run, message, now, log)
