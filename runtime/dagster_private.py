"""Every private Dagster API the engine uses (`dagster._*`), in this one module.

Written against dagster==1.13.27 (constraints.txt): Dagster may change any of these in a
minor release. `tests/test_dagster_private.py` asserts that the installed Dagster is the
pinned one and that every name below still exists, so an upgrade fails here, loudly,
rather than in a run worker; no other module of the engine imports `dagster._*` (the same
test reads their sources). Where Dagster exports a name publicly (`dg.DagsterEvent`,
`dg.DagsterInstance`, `dg.serialize_value`...), callers use the public one instead.
"""

from __future__ import annotations

# Each name: why the engine needs it, and where (all of runtime/).
from dagster._cli.api import (
    # The body of `dagster api execute_run`: a run executed by the zygote's forked child or
    # by a Celery task reports events, status and cancellation as Dagster's own subprocess
    # does (zygote.py, celery_app.py).
    _execute_run_command_body,
)
from dagster._core.definitions.reconstruct import (
    ReconstructableJob,  # the resumed run's job, rebuilt from its origin (celery_resume.py)
)
from dagster._core.events import (
    EngineEventData,  # the event our launcher records at a launch or resume (celery_launcher.py)
)
from dagster._core.execution.api import (
    create_execution_plan,  # the resumed run's plan, to find the steps left (celery_resume.py)
    execute_run_iterator,  # executes the resumed run for those steps only (celery_resume.py)
)
from dagster._core.execution.plan.plan import (
    ExecutionPlan,  # the type of that plan (celery_resume.py)
)
from dagster._core.instance import (
    # The instance the launcher serialized, rebuilt in the forked child (zygote.py); and its
    # storage defaults, which dagster.yaml's `instance_class` must give (read_model.py).
    InstanceRef,
)
from dagster._core.launcher import (
    # The run launcher extension point that dagster.yaml names (launcher.py,
    # celery_launcher.py):
    CheckRunHealthResult,  # a launcher's answer to run monitoring's health check
    LaunchRunContext,  # what launch_run receives
    ResumeRunContext,  # what resume_run receives when monitoring resumes a run
    RunLauncher,  # the base class of a launcher
    WorkerStatus,  # the health verdict inside CheckRunHealthResult
)
from dagster._core.origin import (
    JobPythonOrigin,  # where a run's job comes from, to rebuild it (celery_resume.py)
)
from dagster._grpc.client import (
    # The code server's own client: `ping` (is it up) and `reload_code` (load the location
    # afresh) have no public API (code_server.py, stack.py).
    DagsterGrpcClient,
)
from dagster._grpc.types import (
    ExecuteRunArgs,  # a Celery execute task's arguments from dagster-celery (celery_app.py)
    ResumeRunArgs,  # a Celery resume task's arguments (celery_app.py, celery_launcher.py)
)
from dagster._serdes import (
    ConfigurableClass,  # a class dagster.yaml can name and configure (launcher.py)
    ConfigurableClassData,  # its configuration as dagster.yaml gave it (launcher.py)
    pack_value,  # task arguments in Dagster's serialization (celery_launcher.py)
    unpack_value,  # and back (celery_app.py)
)
from dagster._utils.hosted_user_process import (
    recon_job_from_origin,  # the ReconstructableJob of a JobPythonOrigin (celery_resume.py)
)
from dagster._utils.interrupts import (
    capture_interrupts,  # SIGINT/SIGTERM as an interrupt the run handles (zygote.py)
)

# dagster.yaml names classes by (module, class); these modules are private too
# (runtime/instance.py).
DEFAULT_RUN_LAUNCHER = ("dagster._core.launcher", "DefaultRunLauncher")
QUEUED_RUN_COORDINATOR = ("dagster._core.run_coordinator", "QueuedRunCoordinator")
LOCAL_COMPUTE_LOG_MANAGER = (
    "dagster._core.storage.local_compute_log_manager",
    "LocalComputeLogManager",
)
NOOP_COMPUTE_LOG_MANAGER = (
    "dagster._core.storage.noop_compute_log_manager",
    "NoOpComputeLogManager",
)

# What a run worker imports lazily on its way to the first step: the zygote imports them
# once before it forks (runtime/zygote.py).
PRELOAD_MODULES = (
    "dagster._cli.api",
    "dagster._core.execution.api",
    "dagster._core.execution.plan.execute_plan",
    "dagster._core.execution.plan.execute_step",
    "dagster._core.storage.sqlite_storage",
    "dagster._core.events",
)

__all__ = [
    "DEFAULT_RUN_LAUNCHER",
    "LOCAL_COMPUTE_LOG_MANAGER",
    "NOOP_COMPUTE_LOG_MANAGER",
    "PRELOAD_MODULES",
    "QUEUED_RUN_COORDINATOR",
    "CheckRunHealthResult",
    "ConfigurableClass",
    "ConfigurableClassData",
    "DagsterGrpcClient",
    "EngineEventData",
    "ExecuteRunArgs",
    "ExecutionPlan",
    "InstanceRef",
    "JobPythonOrigin",
    "LaunchRunContext",
    "ReconstructableJob",
    "ResumeRunArgs",
    "ResumeRunContext",
    "RunLauncher",
    "WorkerStatus",
    "_execute_run_command_body",
    "capture_interrupts",
    "create_execution_plan",
    "execute_run_iterator",
    "pack_value",
    "recon_job_from_origin",
    "unpack_value",
]
