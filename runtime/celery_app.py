"""The Celery app of the run workers: `celery -A runtime.celery_app worker` (see wf-worker).

Its two tasks carry dagster-celery's names, so `CeleryRunLauncher` reaches them: a run is
executed by dagster-celery's own task; a run whose worker died is resumed by ours, which
runs only the steps that did not finish (Dagster's in-process executor would run every
step of the run again). Steps that finished keep their checkpoints; the step that was cut
off runs again and finds the prediction it had recorded, so nothing is paid twice.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import dagster as dg
from celery.signals import worker_init
from dagster_celery.config import TASK_EXECUTE_JOB_NAME, TASK_RESUME_JOB_NAME
from dagster_celery.make_app import make_app

from runtime.celery_config import broker_url, celery_settings, result_backend
from runtime.celery_resume import resume_run
from runtime.dagster_private import (
    ExecuteRunArgs,
    ResumeRunArgs,
    _execute_run_command_body,
    unpack_value,
)
from wf_core.config import EngineSettings


def build_app(env: dict[str, str] | None = None) -> Any:
    """The workers' Celery app, configured as the launcher's (runtime.celery_config)."""
    env = dict(os.environ if env is None else env)
    return make_app(
        app_args={
            "broker": broker_url(env),
            "backend": result_backend(env),
            "include": [],
            "config_source": celery_settings(env),
            "task_default_queue": EngineSettings.from_env(env).celery_default_queue,
        }
    )


app = build_app()


@worker_init.connect
def import_code_location(**_kwargs: Any) -> None:
    """Import Dagster and the code location once, before the pool forks its processes:
    a run then starts without paying the import (the prewarmed launcher's saving)."""
    module = importlib.import_module(EngineSettings.from_env().code_location_module)
    if hasattr(module, "defs"):
        module.defs.get_repository_def()


@app.task(bind=True, name=TASK_EXECUTE_JOB_NAME, track_started=True)
def execute_job(_self: Any, execute_job_args_packed: Any) -> int:
    """dagster-celery's task: execute a launched run in this worker process."""
    args = unpack_value(execute_job_args_packed, as_type=ExecuteRunArgs)
    with dg.DagsterInstance.get() as instance:
        return _execute_run_command_body(
            instance=instance,
            run_id=args.run_id,
            write_stream_fn=lambda _event: None,
            set_exit_code_on_failure=True,
        )


@app.task(bind=True, name=TASK_RESUME_JOB_NAME, track_started=True)
def resume_job(_self: Any, execute_job_args_packed: Any) -> int:
    """Resume a run whose worker died: its unfinished steps only."""
    args = unpack_value(execute_job_args_packed, as_type=ResumeRunArgs)
    with dg.DagsterInstance.get() as instance:
        resume_run(instance, args.run_id)
    return 0
