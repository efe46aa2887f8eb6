"""A run that has started but whose worker has not tagged itself yet.

Its worker is known only by the pid on its RUN_START event (on the DagsterEvent,
not the EventLogEntry). Reading it must neither break the retry sensor's tick
(every other job's retry would stop) nor the launcher's health check and terminate.
"""

from __future__ import annotations

import os
import signal
import subprocess
import uuid

import dagster as dg
import pytest

from runtime.launcher import PrewarmedRunLauncher
from runtime.worker import run_worker_identity
from sensors.crash_detector import UNIDENTIFIED_GRACE_SECONDS
from tests.retry_harness import JUST_BEFORE, RetryHarness
from wf_assets.resume import ensure_partition
from wf_core import tags as t
from wf_core.job_ids import new_job_id
from wf_core.times import iso_to_epoch_seconds


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def half_started_run(instance: dg.DagsterInstance, spec, pid: int | None) -> dg.DagsterRun:
    """A run of a new job whose RUN_START event names `pid` (if any) and has no wf/worker tag."""
    job_id = new_job_id()
    ensure_partition(instance, job_id)
    run = dg.DagsterRun(
        job_name=spec.job_name,
        run_id=str(uuid.uuid4()),
        tags=t.job_tags(spec.id, job_id, "user-2", "bridge"),
        status=dg.DagsterRunStatus.STARTING,
    )
    instance.add_run(run)
    start = dg.DagsterEvent(dg.DagsterEventType.RUN_START.value, job_name=spec.job_name, pid=pid)
    instance.report_dagster_event(start, run.run_id)
    run = instance.get_run_by_id(run.run_id)
    assert run.status == dg.DagsterRunStatus.STARTED and t.WORKER not in run.tags
    return run


@pytest.fixture
def harness(instance, bench, specs) -> RetryHarness:
    return RetryHarness(instance, bench, specs)


def test_the_worker_is_read_from_the_run_start_event(instance, specs) -> None:
    spec = specs["img-edit-to-video"]
    dead = half_started_run(instance, spec, _dead_pid())
    alive = half_started_run(instance, spec, os.getpid())
    starts = instance.all_logs(dead.run_id, of_type=dg.DagsterEventType.RUN_START)
    assert run_worker_identity(instance, dead).split(":")[1] == str(starts[0].dagster_event.pid)
    assert run_worker_identity(instance, alive).split(":")[1] == str(os.getpid())


def test_a_dead_half_started_run_is_failed_and_other_retries_go_on(harness, specs) -> None:
    spec = specs["img-edit-to-video"]
    instance = harness.instance
    # Another user's job waits on a retryable failure the sensor must relaunch.
    harness.bench.set_faults({"image_edit": {"error_type": "server_unavailable", "times": 1}})
    waiting = harness.start(spec)
    harness.bench.set_faults({})
    assert harness.state(spec, waiting).status == "pending_retry"
    dead = half_started_run(instance, spec, _dead_pid())
    alive = half_started_run(instance, spec, os.getpid())

    # Ticks before and at the waiting job's backoff; none may raise.
    relaunched = [r for r in harness.tick_when_due(spec, waiting) if r.tags[t.JOB_ID] == waiting]
    assert relaunched, "the waiting job was never retried"
    assert harness.execute(relaunched[0]).success
    assert harness.state(spec, waiting).status == "completed"

    failed = instance.get_run_by_id(dead.run_id)
    assert failed.status == dg.DagsterRunStatus.FAILURE
    assert failed.tags[t.ERROR_TYPE] == "server_unavailable" and failed.tags[t.RETRYABLE] == "true"
    # Its job is now an ordinary retryable crash, not a job stuck "running".
    assert harness.state(spec, dead.tags[t.JOB_ID]).status == "pending_retry"
    assert instance.get_run_by_id(alive.run_id).status == dg.DagsterRunStatus.STARTED


def test_a_run_without_a_worker_is_failed_only_after_its_grace(harness, specs) -> None:
    spec = specs["img-edit-to-video"]
    instance = harness.instance
    unknown = half_started_run(instance, spec, pid=None)  # no wf/worker tag, no RUN_START pid
    assert run_worker_identity(instance, unknown) is None
    updated = instance.get_run_record_by_id(unknown.run_id).update_timestamp.timestamp()
    harness.clock.advance_to(updated + UNIDENTIFIED_GRACE_SECONDS - JUST_BEFORE)
    harness.tick()
    assert instance.get_run_by_id(unknown.run_id).status == dg.DagsterRunStatus.STARTED
    harness.clock.advance_to(updated + UNIDENTIFIED_GRACE_SECONDS)
    harness.tick()
    failed = instance.get_run_by_id(unknown.run_id)
    assert failed.status == dg.DagsterRunStatus.FAILURE
    assert failed.tags[t.RETRYABLE] == "true"
    # The failure is dated by the sensor's clock, which its backoff is counted from.
    assert iso_to_epoch_seconds(failed.tags[t.FAILED_AT]) == pytest.approx(harness.clock())


def test_launcher_health_and_terminate_of_a_half_started_run(instance, specs) -> None:
    spec = specs["img-edit-to-video"]
    launcher = PrewarmedRunLauncher()
    launcher.register_instance(instance)
    dead = half_started_run(instance, spec, _dead_pid())
    health = launcher.check_run_worker_health(instance.get_run_by_id(dead.run_id))
    assert health.status.value == "FAILED"
    sleeper = subprocess.Popen(
        ["sleep", "60"],
        # A shell without job control starts background jobs ignoring SIGINT, and a
        # child inherits that: give the stand-in worker the default, as the zygote does.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        running = half_started_run(instance, spec, sleeper.pid)
        health = launcher.check_run_worker_health(instance.get_run_by_id(running.run_id))
        assert health.status.value == "RUNNING"
        assert launcher.terminate(running.run_id) is True
        assert sleeper.wait(timeout=30) != 0  # interrupted by the terminate
    finally:
        sleeper.kill()
        sleeper.wait()


def starting_run(instance: dg.DagsterInstance, spec, launcher: str) -> dg.DagsterRun:
    """A run its launcher (tagged) marked STARTING and never handed to a worker."""
    job_id = new_job_id()
    ensure_partition(instance, job_id)
    tags = {**t.job_tags(spec.id, job_id, "user-3", "bridge"), t.LAUNCHER: launcher}
    run = dg.DagsterRun(
        job_name=spec.job_name,
        run_id=str(uuid.uuid4()),
        tags=tags,
        status=dg.DagsterRunStatus.STARTING,
    )
    instance.add_run(run)
    return run


def test_a_run_left_starting_by_a_dead_launcher_is_failed_within_a_tick(instance, specs) -> None:
    from runtime.worker import worker_identity
    from sensors.crash_detector import ORPHAN_GRACE_SECONDS, fail_dead_runs

    spec = specs["img-edit-to-video"]
    orphan = starting_run(instance, spec, worker_identity(_dead_pid()))
    launching = starting_run(instance, spec, worker_identity(os.getpid()))  # launcher alive
    record = instance.get_run_record_by_id(orphan.run_id)
    updated = record.update_timestamp.timestamp()
    log = dg.get_dagster_logger()
    # Within its grace a worker may still take it up; after it, it is failed as a crash.
    assert fail_dead_runs(instance, specs, log, updated + 1) == []
    failed = fail_dead_runs(instance, specs, log, updated + ORPHAN_GRACE_SECONDS + 1)
    assert failed == [orphan.run_id]
    run = instance.get_run_by_id(orphan.run_id)
    assert run.status == dg.DagsterRunStatus.FAILURE
    assert run.tags[t.ERROR_TYPE] == "server_unavailable" and run.tags[t.RETRYABLE] == "true"
    assert instance.get_run_by_id(launching.run_id).status == dg.DagsterRunStatus.STARTING
