"""The step guard's stop for a terminated run of the warm worker (wf_assets/step_guard.py):
the worker's process is never signalled, so such a run stops at its next step start.
A run of any other worker is interrupted by the launcher instead, as before."""

from __future__ import annotations

import dagster as dg
import pytest

from wf_assets.step_guard import check_run_may_proceed
from wf_core import tags as t
from wf_core.specs import load_specs


@dg.op
def _noop() -> None:
    pass


@dg.job
def tiny() -> None:
    _noop()


def _run(instance: dg.DagsterInstance, job_id: str, warm: bool) -> dg.DagsterRun:
    tags = t.job_tags("img-edit-to-video", job_id, "u1", "test")
    if warm:
        tags[t.WARM] = "continuation"
    return instance.create_run_for_job(tiny, tags=tags, status=dg.DagsterRunStatus.STARTED)


@pytest.mark.parametrize("instance", ["sqlite"], indirect=True)
def test_a_terminated_warm_run_stops_at_its_next_step(instance: dg.DagsterInstance) -> None:
    spec = load_specs()["img-edit-to-video"]
    run = _run(instance, "j1", warm=True)
    check_run_may_proceed(instance, spec, "j1", run.run_id, "image_edit")  # running: goes on
    instance.report_run_canceling(run)
    with pytest.raises(dg.Failure, match="terminated"):
        check_run_may_proceed(instance, spec, "j1", run.run_id, "video_generation")
    stopped = instance.get_run_by_id(run.run_id)
    assert stopped is not None and stopped.tags[t.STOPPED] == "cancelled"


@pytest.mark.parametrize("instance", ["sqlite"], indirect=True)
def test_another_run_is_left_to_its_launcher(instance: dg.DagsterInstance) -> None:
    spec = load_specs()["img-edit-to-video"]
    run = _run(instance, "j2", warm=False)
    instance.report_run_canceling(run)
    check_run_may_proceed(instance, spec, "j2", run.run_id, "image_edit")
