"""A run launcher that forks run workers from a warm zygote and checks their health.

Configured in dagster.yaml (runtime.instance) as `run_launcher`. Compared with
Dagster's default launcher it
- starts a run in milliseconds instead of spawning and importing for ~1.2 s
  (runtime.zygote), and
- supports `check_run_worker_health`, so Dagster's run monitoring notices a run
  worker that died (the default launcher cannot; Dagster's docs say so).
Workers run on the daemon's host, like the default launcher's.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any

import dagster as dg

from runtime.dagster_private import (  # the documented extension point for launchers
    CheckRunHealthResult,
    ConfigurableClass,
    ConfigurableClassData,
    LaunchRunContext,
    RunLauncher,
    WorkerStatus,
)
from runtime.worker import run_worker_identity, worker_alive, worker_identity
from wf_core import tags as t

# How long an interrupted run worker has to wind down before it is killed.
CANCEL_GRACE_SECONDS = 30.0


class PrewarmedRunLauncher(RunLauncher, ConfigurableClass):
    """Launches each run in a process forked from a warm zygote of its code location."""

    def __init__(self, inst_data: ConfigurableClassData | None = None) -> None:
        self._inst_data = inst_data
        self._zygotes: dict[tuple[str, str, str], subprocess.Popen] = {}
        self._lock = threading.Lock()
        super().__init__()

    @property
    def inst_data(self) -> ConfigurableClassData | None:
        return self._inst_data

    @classmethod
    def config_type(cls) -> dict:
        return {}

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]
    ) -> PrewarmedRunLauncher:
        return cls(inst_data=inst_data)

    def _zygote_for(self, run: dg.DagsterRun) -> subprocess.Popen:
        origin = run.job_code_origin
        if origin is None:
            raise RuntimeError(f"run {run.run_id} has no code origin to load its job from")
        pointer = origin.repository_origin.code_pointer
        module = getattr(pointer, "module", None) or getattr(pointer, "python_file", None)
        if module is None:
            raise RuntimeError(f"run {run.run_id}: code location {pointer} names no module")
        working_directory = getattr(pointer, "working_directory", None) or os.getcwd()
        executable = origin.repository_origin.executable_path or sys.executable
        key = (executable, module, working_directory)
        zygote = self._zygotes.get(key)
        if zygote is None or zygote.poll() is not None:
            zygote = subprocess.Popen(
                [executable, "-m", "runtime.zygote", module, working_directory],
                stdin=subprocess.PIPE,
                cwd=working_directory,
                text=True,
                start_new_session=True,
            )
            self._zygotes[key] = zygote
        return zygote

    # The run coordinator (runtime/coordinator.py) may hand runs to the warm worker.
    leaves_warm_runs = True

    def launch_run(self, context: LaunchRunContext) -> None:
        """Hand the run to its code location's zygote, which forks its worker (a run the
        coordinator handed to the warm continuation worker is left to it)."""
        run = context.dagster_run
        # Who launches it: if this process dies before a worker takes the run up, the
        # crash detector sees a STARTING run whose launcher is gone (sensors/crash_detector).
        self._instance.add_run_tags(run.run_id, {t.LAUNCHER: worker_identity()})
        if run.tags.get(t.WARM) == "launch":
            self._instance.report_engine_event(
                "Handed to the warm continuation worker.", run, cls=self.__class__
            )
            return
        request = {
            "run_id": run.run_id,
            "instance_ref": dg.serialize_value(self._instance.get_ref()),
        }
        with self._lock:
            for attempt in (1, 2):
                zygote = self._zygote_for(run)
                try:
                    assert zygote.stdin is not None  # opened with stdin=PIPE
                    zygote.stdin.write(json.dumps(request) + "\n")
                    zygote.stdin.flush()
                    break
                except (BrokenPipeError, OSError):
                    if attempt == 2:
                        raise
        self._instance.report_engine_event(
            "Launched by PrewarmedRunLauncher (forked from a warm zygote).", run, cls=self.__class__
        )

    def terminate(self, run_id: str) -> bool:
        """Interrupt the run's worker; Dagster then marks the run canceled."""
        run = self._instance.get_run_by_id(run_id)
        if run is None or run.is_finished:
            return False
        identity = run_worker_identity(self._instance, run)
        if identity is None and run.status != dg.DagsterRunStatus.STARTED:
            # Launched, its worker not started yet: a worker that finds its run
            # CANCELED does not start it.
            self._instance.report_run_canceled(run, message="Terminated before its worker started")
            return True
        self._instance.report_run_canceling(run)
        if run.tags.get(t.WARM):
            # Its process is the warm worker, which runs other jobs too: never signalled.
            # The run stops at its next step boundary (wf_assets/step_guard.py).
            return True
        interrupted = identity is not None and bool(worker_alive(identity))
        if interrupted:
            assert identity is not None
            os.kill(int(identity.rsplit(":", 2)[1]), signal.SIGINT)
        # Settled in any case: a worker that was already exiting (a run that had just
        # parked its step, say) reports no cancellation, and the run would stay
        # CANCELING until run monitoring's timeout.
        threading.Thread(
            target=self._settle_cancel, args=(run_id, identity), daemon=True, name="settle-cancel"
        ).start()
        return interrupted

    def _settle_cancel(self, run_id: str, identity: str | None) -> None:
        """Once the interrupted worker is gone, a run still CANCELING is CANCELED.

        A worker that ends its run itself (a step that stopped on the cancel mark) or
        dies on the interrupt reports no cancellation, and the run would stay
        CANCELING until run monitoring's cancel timeout. A worker still alive after
        the grace period is killed.
        """
        deadline = time.monotonic() + CANCEL_GRACE_SECONDS
        while identity and worker_alive(identity) and time.monotonic() < deadline:
            time.sleep(0.2)
        if identity and worker_alive(identity):
            os.kill(int(identity.rsplit(":", 2)[1]), signal.SIGKILL)
        time.sleep(1.0)  # the worker's last events, if it wrote any, land first
        try:
            run = self._instance.get_run_by_id(run_id)
            if run is not None and run.status == dg.DagsterRunStatus.CANCELING:
                self._instance.report_run_canceled(run, message="Run worker ended after terminate")
        except Exception:  # the instance went away (shutdown): monitoring settles it instead
            logging.getLogger(__name__).exception("could not settle the cancel of %s", run_id)

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        """RUNNING while the worker process lives, FAILED once it is gone."""
        identity = run_worker_identity(self._instance, run)
        alive = worker_alive(identity) if identity else None
        if alive is None:
            return CheckRunHealthResult(WorkerStatus.UNKNOWN, "worker not identified yet")
        if alive:
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        return CheckRunHealthResult(WorkerStatus.FAILED, f"run worker {identity} is gone")

    def dispose(self) -> None:
        """Close the zygotes' input: each exits; running workers finish on their own."""
        for zygote in self._zygotes.values():
            if zygote.poll() is None and zygote.stdin:
                zygote.stdin.close()
