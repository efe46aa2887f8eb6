"""Resume a run whose worker died: only the steps that did not finish.

Dagster's in-process executor would run every step of a resumed run again. Here the
run's event log says which steps ended; the run is executed again for the rest only
(an asset subset of the same run id): steps that finished keep their checkpoints, the
step that was cut off runs again and finds the prediction it had recorded.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import dagster as dg
from dagster import DagsterEvent, DagsterEventType

from runtime.dagster_private import (
    ExecutionPlan,
    JobPythonOrigin,
    ReconstructableJob,
    create_execution_plan,
    execute_run_iterator,
    recon_job_from_origin,
)

FINISHED_STEP_EVENTS = {DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_SKIPPED}


def steps_to_resume(
    plan: ExecutionPlan, events: Iterable[DagsterEvent]
) -> tuple[list[str], set[dg.AssetKey]]:
    """(step keys left to run, their asset keys) after a worker died mid-run.

    Steps that succeeded or were skipped are done. A step that ended without an output (a
    parked step) leaves its downstream steps for its continuation run: they are not run.
    """
    finished: set[str] = set()
    produced: set[str] = set()
    for event in events:
        if event.step_key is None:
            continue
        if event.event_type in FINISHED_STEP_EVENTS:
            finished.add(event.step_key)
        elif event.event_type == DagsterEventType.STEP_OUTPUT:
            produced.add(event.step_key)
    left: list[str] = []
    blocked: set[str] = set()
    for step in plan.get_steps_to_execute_in_topo_order():
        upstream = {
            handle.step_key
            for step_input in step.step_inputs
            for handle in step_input.get_step_output_handle_dependencies()
        }
        if upstream & blocked or any(u in finished and u not in produced for u in upstream):
            blocked.add(step.key)
        elif step.key in finished:
            continue
        else:
            left.append(step.key)
    assets = {
        output.properties.asset_key
        for key in left
        for output in plan.get_step_by_key(key).step_outputs
        if output.properties is not None and output.properties.asset_key is not None
    }
    return left, assets


def resume_run(instance: dg.DagsterInstance, run_id: str) -> None:
    """Run what is left of a run whose worker died: only its unfinished steps."""
    run = instance.get_run_by_id(run_id)
    if run is None or run.is_finished:
        return
    origin = run.job_code_origin
    assert isinstance(origin, JobPythonOrigin), f"run {run_id} has no Python origin"
    recon_job: ReconstructableJob = recon_job_from_origin(origin)
    job = (
        recon_job.get_subset(asset_selection=run.asset_selection)
        if run.asset_selection
        else recon_job
    )
    plan = create_execution_plan(job, run_config=run.run_config, tags=run.tags)
    events = [
        record.dagster_event
        for record in instance.all_logs(run_id)
        if record.dagster_event is not None
    ]
    left, assets = steps_to_resume(plan, events)
    instance.report_engine_event(
        f"Resuming on {os.uname().nodename} (pid {os.getpid()}): "
        f"{', '.join(left) or 'no step'} left to run",
        run,
    )
    if not left:
        # Every step had ended before the worker died; only the run's end was lost.
        instance.report_dagster_event(
            DagsterEvent(
                event_type_value=DagsterEventType.RUN_SUCCESS.value,
                job_name=run.job_name,
                message=f'Finished execution of run for "{run.job_name}".',
            ),
            run_id=run_id,
        )
        return
    rest = run._replace(
        asset_selection=frozenset(assets),
        step_keys_to_execute=left,
        execution_plan_snapshot_id=None,
    )
    for _ in execute_run_iterator(recon_job, rest, instance, resume_from_failure=True):
        pass
