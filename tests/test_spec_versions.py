"""Spec versions and job pins: stored once, read back equal, closed when jobs end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import migrated
from tests.fakes.clock import FakeClock
from wf_core.settings import REPO_ROOT
from wf_core.specs import WorkflowSpec, spec_digest
from wf_store.predictions import PredictionStore
from wf_store.spec_versions import SpecVersions, with_retired

BASE = yaml.safe_load((REPO_ROOT / "workflow_specs" / "img-edit-to-video.yaml").read_text())


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path: Path) -> Iterator[PredictionStore]:
    """A store on a SQLite file, or on a fresh PostgreSQL database."""
    if request.param == "postgres":
        url = request.getfixturevalue("pg_url")
    else:
        url = f"sqlite:///{tmp_path / 'state.db'}"
    store = PredictionStore(migrated(url), clock=FakeClock(start=5000.0))
    yield store
    store.close()


def spec(**changes) -> WorkflowSpec:
    return WorkflowSpec.model_validate({**BASE, **changes})


def test_a_job_keeps_the_version_it_was_pinned_to(store: PredictionStore) -> None:
    versions = SpecVersions(store)
    old, new = spec(), spec(credits_cost=80)
    pin = versions.pin("job-1", old, "alice", {"ops": {}})
    assert pin.digest == spec_digest(old)
    again = versions.pin("job-1", new, "alice", None)  # a second pin never moves it
    assert again.digest == spec_digest(old) and again.run_config == {"ops": {}}
    SpecVersions._cache.clear()  # read back from the database, not the process cache
    assert versions.spec_for_job("job-1") == old
    versions.pin("job-2", new, "bob", None)
    assert versions.spec_for_job("job-2") == new
    assert versions.spec_for_job("nobody") is None


def test_a_removed_workflow_stays_defined_while_open_jobs_run_on_it(
    store: PredictionStore,
) -> None:
    versions = SpecVersions(store)
    removed = spec(id="gone-soon", name="Gone")
    versions.pin("job-1", removed, "alice", None)
    versions.pin("job-2", spec(), "alice", None)
    current = {"img-edit-to-video": spec(credits_cost=99)}
    assert [s.id for s in versions.retired(current)] == ["gone-soon"]
    defined = with_retired(current, store.url)
    assert set(defined) == {"img-edit-to-video", "gone-soon"}
    assert defined["img-edit-to-video"].credits_cost == 99  # a file beats a stored version
    versions.finished(["job-1"], 6000.0)
    assert versions.retired(current) == []
    assert [p.job_id for p in versions.open_pins(10)] == ["job-2"]


def test_ownerless_marks_and_events(store: PredictionStore) -> None:
    versions = SpecVersions(store)
    versions.pin("job-1", spec(), "alice", None)
    versions.mark_ownerless(["job-1"], 100.0)
    versions.mark_ownerless(["job-1"], 200.0)  # the first sighting is kept
    assert versions.get("job-1").ownerless_since == 100.0
    versions.owned(["job-1"])
    assert versions.get("job-1").ownerless_since is None
    versions.record_owner_event("job-1", "repaired", "resumed", 300.0)
    assert [(e.job_id, e.action) for e in versions.owner_events(since=250.0)] == [
        ("job-1", "repaired")
    ]
    assert versions.count_owner_events() == {"repaired": 1}
