"""The owner check against a real instance: a job without an owner is noted, then, past
the grace, handed back to a run (or ended when its code cannot continue it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from sensors.owners import OwnerSettings, evaluate_owners
from tests.conftest import migrated
from tests.fakes.clock import FakeClock
from wf_core import tags as t
from wf_core.specs import WorkflowSpec
from wf_store.predictions import PredictionStore
from wf_store.spec_versions import SpecVersions

SETTINGS = OwnerSettings(interval=1, batch=2, grace=10)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[PredictionStore]:
    clock = FakeClock(start=1000.0)
    store = PredictionStore(migrated(f"sqlite:///{tmp_path / 'state.db'}"), clock=clock)
    yield store
    store.close()


def tick(instance, specs, store, now: float, cursor: str | None = None) -> dg.SensorResult:
    context = dg.build_sensor_context(instance=instance, cursor=cursor)
    return evaluate_owners(context, specs, store, SETTINGS, now)


def test_an_ownerless_job_is_repaired_after_the_grace(
    instance: dg.DagsterInstance, store: PredictionStore, specs: dict[str, WorkflowSpec]
) -> None:
    spec = specs["img-edit-to-video"]
    versions = SpecVersions(store)
    config = {"ops": {spec.op_name("upload"): {"config": {"source": "/tmp/in.jpg"}}}}
    versions.pin("job-a", spec, "alice", config)  # pinned at 1000, then its run vanished
    # Within the grace of its pin: not a candidate (its first run may not exist yet).
    assert tick(instance, specs, store, 1005.0).run_requests == []
    assert versions.get("job-a").ownerless_since is None
    # First seen without an owner: noted, nothing launched yet.
    assert tick(instance, specs, store, 1020.0).run_requests == []
    assert versions.get("job-a").ownerless_since == 1020.0
    assert tick(instance, specs, store, 1025.0).run_requests == []
    # Still ownerless past the grace: a run resumes it with the options it started with.
    (request,) = tick(instance, specs, store, 1031.0).run_requests
    assert request.partition_key == "job-a"
    assert request.tags[t.LAUNCHED_BY] == "owner_check"
    assert request.tags[t.USER] == "alice"
    assert request.run_config["ops"][spec.op_name("upload")]["config"]["source"] == "/tmp/in.jpg"
    assert [k.path[1] for k in request.asset_selection or []] == [s.name for s in spec.steps]
    assert [(e.job_id, e.action) for e in versions.owner_events()] == [("job-a", "repaired")]


def test_a_job_with_a_live_prediction_is_owned(
    instance: dg.DagsterInstance, store: PredictionStore, specs: dict[str, WorkflowSpec]
) -> None:
    spec = specs["img-edit-to-video"]
    SpecVersions(store).pin("job-b", spec, "bob", None)
    store.intend(
        job_id="job-b",
        step="image_edit",
        attempt=1,
        workflow_id=spec.id,
        provider="local",
        model="nano-banana",
        provider_model="local/nano-banana",
        input_digest="d",
        provider_input={"prompt": "p"},
        run_id="r1",
    )
    for now in (1020.0, 1040.0, 1060.0):
        assert tick(instance, specs, store, now).run_requests == []
    assert SpecVersions(store).get("job-b").ownerless_since is None


def test_the_check_reads_a_bounded_slice_round_robin(
    instance: dg.DagsterInstance, store: PredictionStore, specs: dict[str, WorkflowSpec]
) -> None:
    spec = specs["img-edit-to-video"]
    versions = SpecVersions(store)
    for job_id in ("j1", "j2", "j3"):
        versions.pin(job_id, spec, "carol", None)
    first = tick(instance, specs, store, 1020.0)
    assert first.cursor == "j2"  # a full slice of 2: the next tick goes on after it
    second = tick(instance, specs, store, 1021.0, first.cursor)
    assert second.cursor == ""  # the end: the next tick starts over
    assert all(versions.get(j).ownerless_since for j in ("j1", "j2", "j3"))
