"""What a resumed run still has to do after its worker died: only its unfinished steps."""

from __future__ import annotations

from typing import Any

import dagster as dg
import pytest
from dagster._core.events import DagsterEvent, DagsterEventType
from dagster._core.execution.api import create_execution_plan
from dagster._core.execution.plan.objects import StepSuccessData
from dagster._core.execution.plan.outputs import StepOutputData, StepOutputHandle

from definitions import build_definitions
from runtime.celery_resume import steps_to_resume
from wf_core.run_config import build_run_config
from wf_core.specs import WorkflowSpec

UPLOAD, EDIT, VIDEO = (
    "img_edit_to_video__upload",
    "img_edit_to_video__image_edit",
    "img_edit_to_video__video_generation",
)


@pytest.fixture
def plan(specs: dict[str, WorkflowSpec], bench):
    spec = specs["img-edit-to-video"]
    defs = build_definitions({spec.id: spec}, resources=bench.resources())
    job = defs.resolve_job_def(spec.job_name)
    return create_execution_plan(job, run_config=build_run_config(spec, None, "in.jpg"))


def event(kind: DagsterEventType, step: str) -> DagsterEvent:
    data: Any = None
    if kind == DagsterEventType.STEP_OUTPUT:
        data = StepOutputData(step_output_handle=StepOutputHandle(step, "result"))
    elif kind == DagsterEventType.STEP_SUCCESS:
        data = StepSuccessData(duration_ms=1.0)
    return DagsterEvent(
        event_type_value=kind.value,
        job_name="img_edit_to_video",
        step_key=step,
        event_specific_data=data,
    )


def test_nothing_done_runs_everything(plan) -> None:
    left, assets = steps_to_resume(plan, [])
    assert left == [UPLOAD, EDIT, VIDEO]
    assert dg.AssetKey(["img-edit-to-video", "upload"]) in assets


def test_a_finished_step_is_not_run_again(plan) -> None:
    events = [
        event(DagsterEventType.STEP_START, UPLOAD),
        event(DagsterEventType.STEP_OUTPUT, UPLOAD),
        event(DagsterEventType.STEP_SUCCESS, UPLOAD),
        event(DagsterEventType.STEP_START, EDIT),  # cut off here
    ]
    left, assets = steps_to_resume(plan, events)
    assert left == [EDIT, VIDEO]
    assert dg.AssetKey(["img-edit-to-video", "upload"]) not in assets


def test_a_parked_step_leaves_its_downstream_to_the_continuation(plan) -> None:
    events = [
        event(DagsterEventType.STEP_OUTPUT, UPLOAD),
        event(DagsterEventType.STEP_SUCCESS, UPLOAD),
        event(DagsterEventType.STEP_SUCCESS, EDIT),  # parked: success without an output
    ]
    assert steps_to_resume(plan, events) == ([], set())
