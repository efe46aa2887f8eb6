"""dagster-celery's run launcher, made to fit this engine's runs on several hosts.

Three changes to `CeleryRunLauncher`: a run's `dagster/priority` (continuation runs: 10)
becomes its broker priority, so warm continuations pass new jobs at the workers too; a run
whose task is still queued reads as healthy (it was launched or resumed and waits for a
slot); and a run whose task is STARTED is checked against its worker: the broker must
still hear that worker (one broadcast ping per poll, shared by every run), so a host that
died with its runs (whose tasks stay STARTED forever) is noticed and run monitoring
resumes the runs elsewhere.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import dagster as dg
from dagster_celery.config import TASK_RESUME_JOB_NAME
from dagster_celery.launcher import CeleryRunLauncher
from dagster_celery.tags import DAGSTER_CELERY_QUEUE_TAG, DAGSTER_CELERY_TASK_ID_TAG

from runtime.celery_config import broker_priority
from runtime.dagster_private import (
    CheckRunHealthResult,
    EngineEventData,
    ResumeRunArgs,
    ResumeRunContext,
    WorkerStatus,
    pack_value,
)

PRIORITY_TAG = "dagster/priority"
# How long a worker may go unheard before its STARTED runs count as dead: two pings at
# least, so one lost answer (a busy broker) kills nothing.
PING_INTERVAL_SECONDS = 5.0
SILENCE_SECONDS = 12.0
PING_TIMEOUT_SECONDS = 1.0


class WorkerLiveness:
    """Which Celery workers the broker still hears, from pings at most every `interval`.

    `ping` returns the node names that answered; `clock` is the time source (seconds).
    A worker is alive if it answered within `silence`; dead only once we have pinged for
    at least `silence` and it never answered in that window.
    """

    def __init__(
        self,
        ping: Callable[[], Iterable[str]],
        clock: Callable[[], float] = time.monotonic,
        interval: float = PING_INTERVAL_SECONDS,
        silence: float = SILENCE_SECONDS,
    ) -> None:
        self._ping = ping
        self._clock = clock
        self.interval = interval
        self.silence = silence
        self._lock = threading.Lock()
        self._first_ping: float | None = None
        self._last_ping = float("-inf")
        self._heard: dict[str, float] = {}

    def alive(self, node: str) -> bool | None:
        """True if `node` answered lately, False if it stayed silent, None if too early."""
        with self._lock:
            now = self._clock()
            if now - self._last_ping >= self.interval:
                self._last_ping = now
                self._first_ping = now if self._first_ping is None else self._first_ping
                for name in self._ping():
                    self._heard[name] = now
            heard = self._heard.get(node)
            if heard is not None and now - heard <= self.silence:
                return True
            if self._first_ping is None or now - self._first_ping < self.silence:
                return None
            return False


class WorkflowCeleryRunLauncher(CeleryRunLauncher):
    """CeleryRunLauncher with run priorities, queued-is-healthy and per-host worker checks."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.liveness = WorkerLiveness(self._ping_workers)

    def _ping_workers(self) -> list[str]:
        replies = self.celery.control.ping(timeout=PING_TIMEOUT_SECONDS) or []
        return [name for reply in replies for name in reply]

    def resume_run(self, context: ResumeRunContext) -> None:
        """Send our resume task (runtime.celery_app) by name.

        dagster-celery 0.29.27's own resume signs its task with a keyword its task function
        does not take (TypeError at send, and the run is failed instead of resumed).
        """
        run = context.dagster_run
        if run.job_code_origin is None:
            raise dg.DagsterInvariantViolationError(f"run {run.run_id} has no code origin")
        args = ResumeRunArgs(
            job_origin=run.job_code_origin,
            run_id=run.run_id,
            instance_ref=self._instance.get_ref(),
            set_exit_code_on_failure=True,
        )
        signature = self.celery.signature(
            TASK_RESUME_JOB_NAME,
            kwargs={"execute_job_args_packed": pack_value(args)},
            immutable=True,
        )
        self._launch_celery_task_run(run, signature, TASK_RESUME_JOB_NAME)

    def _launch_celery_task_run(self, run: dg.DagsterRun, task_signature: Any, routing_key: str):
        try:
            priority = int(run.tags.get(PRIORITY_TAG, "0") or 0)
        except ValueError:
            priority = 0
        queue = run.tags.get(DAGSTER_CELERY_QUEUE_TAG, self.default_queue)
        result = task_signature.apply_async(
            priority=broker_priority(priority, self.broker or ""),
            queue=queue,
            routing_key=f"{queue}.{routing_key}",
        )
        self._instance.add_run_tags(run.run_id, {DAGSTER_CELERY_TASK_ID_TAG: result.task_id})
        self._instance.report_engine_event(
            "Celery task sent to the broker",
            run,
            EngineEventData({"Celery Task ID": result.task_id, "Celery Queue": queue}),
            cls=self.__class__,
        )

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        task_id = run.tags.get(DAGSTER_CELERY_TASK_ID_TAG)
        if not task_id:
            return CheckRunHealthResult(WorkerStatus.UNKNOWN, "run has no Celery task")
        result = self.celery.AsyncResult(task_id)
        state = result.state
        if state == "SUCCESS":
            return CheckRunHealthResult(WorkerStatus.SUCCESS)
        if state in ("FAILURE", "REVOKED"):
            return CheckRunHealthResult(WorkerStatus.FAILED, f"Celery task {state.lower()}")
        if state == "PENDING":
            # Queued (a resume waiting for a free slot): not a dead worker.
            return CheckRunHealthResult(WorkerStatus.RUNNING, "Celery task queued")
        worker = result.worker if state == "STARTED" else None
        if worker and self.liveness.alive(worker) is False:
            return CheckRunHealthResult(
                WorkerStatus.FAILED, f"Celery worker {worker} stopped answering the broker"
            )
        return CheckRunHealthResult(WorkerStatus.RUNNING)
