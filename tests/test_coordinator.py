"""The run coordinator: Dagster's queue, except that a workflow run the queue's limits allow
goes at once to an idle warm continuation worker (runtime/coordinator.py).

A real Dagster instance on PostgreSQL from our own dagster.yaml; the "worker" is a
listening connection named as a worker's, which is all the coordinator can see of one.
"""

from __future__ import annotations

import select
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from runtime.coordinator import WarmRunCoordinator
from runtime.instance import write_instance_yaml
from wf_core import tags as t
from wf_core.settings import state_db_url
from wf_store.migrations import upgrade
from wf_store.state_db import engine_for
from wf_store.wakeups import LAUNCH_CHANNEL, listen, received


@dg.op
def _noop() -> None:
    pass


@dg.job
def tiny() -> None:
    _noop()


@pytest.fixture
def instance(pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator:
    home = tmp_path / "home"
    monkeypatch.setenv("DAGSTER_PG_URL", pg_url)
    monkeypatch.delenv("WF_STATE_DB_URL", raising=False)
    monkeypatch.delenv("CONTINUATION_WORKER", raising=False)
    write_instance_yaml(home, pg_url)
    engine = engine_for(state_db_url(home))
    upgrade(engine)
    engine.dispose()
    with dg.DagsterInstance.from_config(str(home)) as inst:
        yield inst


def _run(
    instance: dg.DagsterInstance, job_id: str, status: dg.DagsterRunStatus | None = None
) -> dg.DagsterRun:
    tags = t.job_tags("wf", job_id, "u1", "test")
    return instance.create_run_for_job(tiny, tags=tags, status=status)


def _submit(instance: dg.DagsterInstance, run: dg.DagsterRun) -> dg.DagsterRun:
    coordinator = instance.run_coordinator
    return coordinator.submit_run(dg.SubmitRunContext(run, workspace=None))  # type: ignore[arg-type]


def _warm(instance: dg.DagsterInstance, run: dg.DagsterRun) -> bool:
    coordinator = instance.run_coordinator
    assert isinstance(coordinator, WarmRunCoordinator)
    return coordinator._warm_allowed(run)


def test_the_instance_loads_the_warm_coordinator(instance: dg.DagsterInstance) -> None:
    assert isinstance(instance.run_coordinator, WarmRunCoordinator)


def test_without_a_listening_worker_a_run_goes_to_the_queue(instance: dg.DagsterInstance) -> None:
    assert not _warm(instance, _run(instance, "j1"))


def test_an_idle_worker_gets_the_run_at_once_and_a_busy_one_does_not(
    instance: dg.DagsterInstance, pg_url: str
) -> None:
    conn = listen(pg_url)
    try:
        first = _submit(instance, _run(instance, "j1"))
        assert first.status == dg.DagsterRunStatus.STARTING
        stored = instance.get_run_by_id(first.run_id)
        assert stored is not None and stored.tags[t.WARM] == "launch"
        select.select([conn], [], [], 5)
        assert received(conn) == [(LAUNCH_CHANNEL, first.run_id)]
        # The one worker has a run in hand: another job's run goes to the queue.
        assert not _warm(instance, _run(instance, "j2"))
        instance.report_run_failed(stored)
        assert _warm(instance, _run(instance, "j2"))
        # A job with a run in progress (or queued) waits in line.
        _run(instance, "j2", dg.DagsterRunStatus.STARTED)
        assert not _warm(instance, _run(instance, "j2"))
        assert _warm(instance, _run(instance, "j3"))
        # Not a workflow run (no job tags): the queue.
        assert not _warm(instance, instance.create_run_for_job(tiny))
    finally:
        conn.close()
