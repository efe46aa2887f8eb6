"""The warm continuation worker on a real stack (tests/live_rig.py: PostgreSQL, the bridge
under gunicorn receiving the signing Replicate fake's webhooks).

What must hold on the fast path: jobs complete with one prediction per step, their runs
executed in the warm worker (tagged `wf/warm`); a SIGKILL of the worker in the middle
of a continuation loses nothing and pays nothing twice; two workers beside the sensor
never both continue one prediction.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.live_rig import (
    BASE,
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
from wf_core.settings import REPO_ROOT

pytestmark = [pytest.mark.stack, pytest.mark.timeout(900)]
ONE_EACH = {"image_edit": 1, "video_generation": 1}


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with live_rig(tmp_path_factory) as running:
        assert "continuations" in running.stack.procs, "the stack runs the warm worker"
        yield running


def _continuations(rig: Rig, job_id: str) -> dict[str, int]:
    """How many runs continued each of the job's predictions."""
    counts: dict[str, int] = {}
    for view in job_run_views(rig.stack.instance, job_id):
        intent = view.tags.get(t.CONTINUES)
        if intent:
            counts[intent] = counts.get(intent, 0) + 1
    return counts


def test_jobs_continue_in_the_warm_worker_once_each(rig: Rig) -> None:
    before = rig.fake.created_count()
    ids = [started(rig, BASE)["job_id"] for _ in range(3)]
    docs = final(rig, ids, 240)
    assert {doc["status"] for doc in docs.values()} == {"completed"}, docs
    for job_id in ids:
        assert {k: len(v) for k, v in predictions_per_step(rig, job_id).items()} == ONE_EACH
        assert list(_continuations(rig, job_id).values()) == [1, 1]
        runs = job_run_views(rig.stack.instance, job_id)
        # The fast path ran them: the worker, not a forked run worker per run.
        assert any(view.tags.get(t.WARM) == "continuation" for view in runs), runs
    assert rig.fake.created_count() - before == 2 * len(ids)


def test_sigkill_of_the_worker_mid_continuation_loses_nothing(rig: Rig) -> None:
    """The worker dies while it executes a continuation: the crash detector fails that
    run as a retryable crash, the retry resumes the job, the restarted worker goes on."""
    before = rig.fake.created_count()
    ids = [started(rig, BASE)["job_id"] for _ in range(3)]
    parked(rig, ids, "image_edit")
    instance = rig.stack.instance

    def continuing() -> bool:
        return any(
            view.tags.get(t.WARM) == "continuation" and view.status == "STARTED"
            for job_id in ids
            for view in job_run_views(instance, job_id)
        )

    wait_for(continuing, 120, "a continuation run in the warm worker", poll=0.01)
    rig.stack.kill("continuations")
    rig.stack.restart("continuations")
    docs = final(rig, ids, 420)
    assert {doc["status"] for doc in docs.values()} == {"completed"}, docs
    for job_id in ids:
        assert {k: len(v) for k, v in predictions_per_step(rig, job_id).items()} == ONE_EACH
    assert rig.fake.created_count() - before == 2 * len(ids)


def test_two_workers_and_the_sensor_never_both_continue_a_prediction(rig: Rig) -> None:
    before = rig.fake.created_count()
    second = subprocess.Popen(
        [sys.executable, "-m", "sensors.continuations"],
        cwd=REPO_ROOT,
        env=rig.stack.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(3)  # the second worker listening
        ids = [started(rig, BASE)["job_id"] for _ in range(6)]
        docs = final(rig, ids, 300)
    finally:
        second.terminate()
        second.wait(60)
    assert {doc["status"] for doc in docs.values()} == {"completed"}, docs
    for job_id in ids:
        assert {k: len(v) for k, v in predictions_per_step(rig, job_id).items()} == ONE_EACH
        assert list(_continuations(rig, job_id).values()) == [1, 1], _continuations(rig, job_id)
    assert rig.fake.created_count() - before == 2 * len(ids)
