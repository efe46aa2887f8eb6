"""Deploys and lost owners while jobs are parked, on a real stack (tests/live_rig.py):
the webserver, daemon and code server restarted under 20 parked jobs, and a job whose
owner is removed by hand."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.fakes.replicate_server import Script
from tests.live_rig import (
    BASE,
    PARKED_SECONDS,
    Rig,
    final,
    live_rig,
    parked,
    predictions_per_step,
    started,
    wait_for,
)
from wf_assets.job_runs import job_run_views
from wf_core import tags as t
from wf_store.spec_versions import SpecVersions

pytestmark = [pytest.mark.stack, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with live_rig(tmp_path_factory) as running:
        yield running


def test_restarts_under_20_parked_jobs_lose_none_and_pay_once(rig: Rig) -> None:
    before = rig.fake.created_count()
    # Held at the provider until released: all 20 are parked together however slowly a
    # loaded machine starts them (a clock-bound script let the first ones finish first).
    rig.fake.script = Script(seconds=15.0, outcome="never")
    names = ("webserver", "daemon", "codeserver")
    try:
        ids = [started(rig, BASE)["job_id"] for _ in range(20)]
        parked(rig, ids, "image_edit")
        stack = rig.stack
        # A deploy: all three stopped at once (SIGTERM), then all three crash (SIGKILL).
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for name in names:
                stack.signal(name, sig)
            for name in ("codeserver", "daemon", "webserver"):
                stack.restart(name)
        rig.fake.script = Script(seconds=PARKED_SECONDS)  # the video steps end on their own
        rig.fake.release()
        docs = final(rig, ids, 420)
    finally:
        rig.fake.script = Script(seconds=PARKED_SECONDS)
    assert {doc["status"] for doc in docs.values()} == {"completed"}, docs
    for job_id in ids:
        assert {k: len(v) for k, v in predictions_per_step(rig, job_id).items()} == {
            "image_edit": 1,
            "video_generation": 1,
        }
    assert rig.fake.created_count() - before == 40


def test_a_job_whose_owner_is_removed_by_hand_is_repaired_and_alerted(rig: Rig) -> None:
    job_id = started(rig, BASE)["job_id"]
    parked(rig, [job_id], "image_edit")
    instance = rig.stack.instance
    # Its owner removed by hand: the parked prediction's row, and the job's runs.
    with rig.store.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM wf_predictions WHERE job_id = %s", (job_id,))
    for view in job_run_views(instance, job_id):
        instance.delete_run(view.run_id)
    removed = time.monotonic()
    versions = SpecVersions(rig.store)
    events = wait_for(lambda: versions.owner_events(job_id), 30, "the owner check acted")
    print(f"ownerless job acted on after {time.monotonic() - removed:.1f}s")
    assert events[0].action == "repaired", events
    runs = wait_for(lambda: job_run_views(instance, job_id), 30, "the repair run")
    assert runs[0].tags[t.LAUNCHED_BY] == "owner_check"
    doc = final(rig, [job_id], 180)[job_id]
    assert doc["status"] == "completed", doc
    metrics = httpx.get(f"{rig.bridge}/metrics", timeout=30).text
    assert 'wf_jobs_ownerless_total{action="repaired"}' in metrics
    wait_for(
        lambda: any(
            text.startswith("ALERT:") and "without an owner" in text for text in rig.alerts.texts()
        ),
        60,
        "the alert fired",
    )
    wait_for(
        lambda: any(
            text.startswith("RESOLVED:") and "without an owner" in text
            for text in rig.alerts.texts()
        ),
        60,
        "the alert cleared",
    )
