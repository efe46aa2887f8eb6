"""Parked steps against Replicate's wire format, on a real stack, with webhooks.

A real dagster-webserver and daemon; the loopback Replicate fake (predictions end by its
clock and call back, signed like Replicate; it can drop, duplicate, reorder and hold
webhooks, and bill a create whose answer is lost); the bridge's receiver served over
HTTP. Each test counts what matters: every job completes (or ends as it should), and
each step's prediction is created exactly once.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from werkzeug.serving import make_server

from bridge_api import create_app
from runtime.stack import DagsterStack, free_port
from tests.conftest import SAMPLE_IMAGE
from tests.fakes.replicate_server import FakeReplicate, Script
from wf_assets.job_runs import job_run_views, load_job_state
from wf_core import tags as t
from wf_core.models import MODELS
from wf_core.specs import WorkflowSpec, load_specs
from wf_store.predictions import CONSUMED, PARKED, PredictionStore

pytestmark = [pytest.mark.stack, pytest.mark.timeout(600)]

TOKEN = "r8_stack_token"
WORKFLOW = "img-edit-to-video"
PREDICTION_SECONDS = 1.5
# Long enough that a webhook, not a poll, completes a prediction when webhooks flow.
POLL_INTERVAL = 8.0


@dataclass
class Rig:
    """Everything one module's tests share."""

    stack: DagsterStack
    fake: FakeReplicate
    store: PredictionStore
    client: object  # the bridge's Flask test client
    hook_url: str
    spec: WorkflowSpec


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    root = tmp_path_factory.mktemp("parked")
    models = {m.provider_model.partition(":")[0] for m in MODELS.values()}
    videos = {
        m.provider_model.partition(":")[0] for m in MODELS.values() if "image_to_video" in m.tasks
    }
    port = free_port()
    env = {
        "MEDIA_DIR": str(root / "media"),
        "REPLICATE_API_TOKEN": TOKEN,
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "POLL_INTERVAL_SECONDS": str(POLL_INTERVAL),
        "RETRY_BACKOFF_BASE": "0.5",
        "RETRY_BACKOFF_CAP": "1",
    }
    with FakeReplicate(TOKEN, models, videos) as fake:
        fake.script = Script(seconds=PREDICTION_SECONDS)
        env["REPLICATE_API_BASE_URL"] = fake.base_url
        with DagsterStack(root / "home", env=env, timeout=120) as stack:
            store = PredictionStore(stack.state_db_url)
            app = create_app(
                {
                    "DAGSTER_GRAPHQL_URL": stack.graphql_url,
                    "MEDIA_DIR": str(root / "media"),
                    "UPLOAD_DIR": str(root / "uploads"),
                    "AUTH_MODE": "disabled",
                    "REPLICATE_WEBHOOK_SECRET": fake.webhook_secret,
                    "PREDICTION_STORE": store,
                    "RATELIMIT_EXECUTE": "1000 per minute",
                    "RATELIMIT_RETRY": "1000 per minute",
                }
            )
            server = make_server("127.0.0.1", port, app, threaded=True)
            thread = threading.Thread(target=server.serve_forever, daemon=True)
            thread.start()
            try:
                yield Rig(
                    stack,
                    fake,
                    store,
                    app.test_client(),
                    f"http://127.0.0.1:{port}/hooks/replicate",
                    load_specs()[WORKFLOW],
                )
            finally:
                server.shutdown()
                thread.join(5)


@pytest.fixture(autouse=True)
def calm_fake(rig: Rig) -> Iterator[None]:
    """Every test starts with webhooks flowing normally and quick predictions."""
    rig.fake.script = Script(seconds=PREDICTION_SECONDS)
    yield
    fake = rig.fake
    fake.drop_webhooks = 0
    fake.drop_all_webhooks = False
    fake.duplicate_webhooks = False
    fake.reorder_webhooks = False
    fake.release_webhooks()


def execute(rig: Rig) -> str:
    """POST /workflows/execute as a person would; the job id."""
    response = rig.client.post(
        "/workflows/execute",
        data={"workflow_id": WORKFLOW, "file": (io.BytesIO(SAMPLE_IMAGE.read_bytes()), "p.jpg")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 202, response.get_json()
    return response.get_json()["job_id"]


def wait_for(predicate, timeout: float, what: str, poll: float = 0.2):
    """Poll `predicate` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not seen within {timeout:.0f}s")
        time.sleep(poll)


def final_status(rig: Rig, job_id: str, timeout: float = 120) -> str:
    """The job's status once it is final."""

    def final() -> str | None:
        status = load_job_state(rig.stack.instance, rig.spec, job_id).status
        return status if status in ("completed", "failed", "cancelled") else None

    return wait_for(final, timeout, f"job {job_id} final")


def creates_for(rig: Rig, job_id: str) -> dict[str, int]:
    """Predictions billed at the fake per step of one job (from the rows' prediction ids)."""
    ids = {r.prediction_id: r.step for r in rig.store.for_job(job_id) if r.prediction_id}
    counts: dict[str, int] = {}
    with rig.fake.lock:
        for prediction in rig.fake.predictions.values():
            step = ids.get(prediction.id)
            if step:
                counts[step] = counts.get(step, 0) + 1
    return counts


def test_completion_by_webhook(rig: Rig) -> None:
    before = rig.fake.created_count()
    job_id = execute(rig)
    assert final_status(rig, job_id) == "completed"
    rows = rig.store.for_job(job_id)
    assert [(r.step, r.state, r.completed_by) for r in rows] == [
        ("image_edit", CONSUMED, "webhook"),
        ("video_generation", CONSUMED, "webhook"),
    ]
    assert rig.fake.created_count() - before == 2
    created = [p for p in rig.fake.predictions.values() if p.id in {r.prediction_id for r in rows}]
    assert all(
        p.webhook and f"intent={r.id}" in p.webhook for p, r in zip(created, rows, strict=False)
    )
    runs = job_run_views(rig.stack.instance, job_id)
    assert len(runs) == 3 and {r.status for r in runs} == {"SUCCESS"}
    view = rig.client.get(f"/workflows/execution/{job_id}").get_json()
    assert view["status"] == "completed"
    assert view["result"]["video_url"]


def test_a_dropped_webhook_is_made_up_for_by_polling(rig: Rig) -> None:
    rig.fake.drop_all_webhooks = True
    job_id = execute(rig)
    assert final_status(rig, job_id) == "completed"
    rows = rig.store.for_job(job_id)
    assert [r.completed_by for r in rows] == ["poll", "poll"]
    assert creates_for(rig, job_id) == {"image_edit": 1, "video_generation": 1}


def test_duplicated_and_out_of_order_webhooks_change_nothing(rig: Rig) -> None:
    rig.fake.duplicate_webhooks = True
    rig.fake.reorder_webhooks = True
    job_id = execute(rig)
    assert final_status(rig, job_id) == "completed"
    # One continuation per prediction, whatever arrived how often and in what order.
    runs = job_run_views(rig.stack.instance, job_id)
    assert len(runs) == 3
    assert len({r.tags[t.CONTINUES] for r in runs if t.CONTINUES in r.tags}) == 2
    assert creates_for(rig, job_id) == {"image_edit": 1, "video_generation": 1}
    assert all(r.state == CONSUMED for r in rig.store.for_job(job_id))


def test_a_forged_webhook_is_refused_and_changes_nothing(rig: Rig) -> None:
    rig.fake.script = Script(seconds=60)
    job_id = execute(rig)
    row = wait_for(
        lambda: next((r for r in rig.store.for_job(job_id) if r.state == PARKED), None),
        60,
        "a parked prediction",
    )
    body = {"id": row.prediction_id, "status": "succeeded", "output": ["http://evil/x.png"]}
    headers = {
        "webhook-id": "msg_forged",
        "webhook-timestamp": str(int(time.time())),
        "webhook-signature": "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    }
    answer = httpx.post(f"{rig.hook_url}?intent={row.id}", json=body, headers=headers)
    assert answer.status_code == 401
    assert rig.store.get(row.id).state == PARKED
    assert rig.client.post(f"/workflows/cancel/{job_id}").status_code == 200
    assert final_status(rig, job_id) == "cancelled"


def test_webhooks_that_arrive_while_the_engine_is_down_are_not_lost(rig: Rig) -> None:
    rig.fake.script = Script(seconds=4)
    job_id = execute(rig)
    wait_for(
        lambda: any(r.state == PARKED for r in rig.store.for_job(job_id)),
        60,
        "the edit parked",
    )
    rig.stack.kill("daemon")
    try:
        # The prediction ends and its webhook is received while no daemon runs.
        wait_for(
            lambda: any(r.completed_by == "webhook" for r in rig.store.for_job(job_id)),
            30,
            "the webhook recorded",
        )
    finally:
        rig.stack.restart("daemon")
    assert final_status(rig, job_id) == "completed"
    assert creates_for(rig, job_id) == {"image_edit": 1, "video_generation": 1}


def test_a_failed_prediction_is_retried_like_any_retryable_failure(rig: Rig) -> None:
    rig.fake.script = Script(seconds=1, outcome="failed", error="CUDA error: out of memory")
    job_id = execute(rig)
    wait_for(lambda: creates_for(rig, job_id).get("image_edit"), 60, "the edit created")
    rig.fake.script = Script(seconds=PREDICTION_SECONDS)
    assert final_status(rig, job_id) == "completed"
    runs = job_run_views(rig.stack.instance, job_id)
    failed = [r for r in runs if r.status == "FAILURE"]
    assert len(failed) == 1 and failed[0].tags[t.FAILED_STEP] == "image_edit"
    assert failed[0].tags[t.RETRYABLE] == "true"
    # The failed prediction, then a new one on the retry; the video once.
    assert creates_for(rig, job_id) == {"image_edit": 2, "video_generation": 1}


def test_a_permanent_failure_then_a_manual_retry(rig: Rig) -> None:
    rig.fake.script = Script(seconds=1, outcome="failed", error="NSFW content detected")
    job_id = execute(rig)
    assert final_status(rig, job_id) == "failed"
    view = rig.client.get(f"/workflows/execution/{job_id}").get_json()
    assert view["error_info"]["error_type"] == "content_rejected" and view["can_retry"]
    rig.fake.script = Script(seconds=PREDICTION_SECONDS)
    assert rig.client.post(f"/workflows/retry/{job_id}").status_code == 202
    assert final_status(rig, job_id) == "completed"
    assert creates_for(rig, job_id) == {"image_edit": 2, "video_generation": 1}


def test_cancel_while_parked_stops_the_prediction_at_the_provider(rig: Rig) -> None:
    rig.fake.script = Script(seconds=120)
    job_id = execute(rig)
    row = wait_for(
        lambda: next((r for r in rig.store.for_job(job_id) if r.state == PARKED), None),
        60,
        "a parked prediction",
    )
    view = rig.client.get(f"/workflows/execution/{job_id}").get_json()
    assert view["status"] == "running"
    assert view["checkpoints"]["1"]["status"] == "running"
    assert view["checkpoints"]["1"]["provider"]["prediction_id"] == row.prediction_id
    assert rig.client.post(f"/workflows/cancel/{job_id}").status_code == 200
    assert final_status(rig, job_id) == "cancelled"
    wait_for(
        lambda: rig.fake.predictions[row.prediction_id].status == "canceled",
        30,
        "the prediction cancelled at the provider",
    )
    assert len(job_run_views(rig.stack.instance, job_id)) == 1


def _worker_pid(rig: Rig, job_id: str) -> int | None:
    for run in job_run_views(rig.stack.instance, job_id):
        if run.status == "STARTED" and t.WORKER in run.tags:
            return int(run.tags[t.WORKER].rsplit(":", 2)[1])
    return None


def test_sigkill_of_the_run_worker_while_the_create_is_in_flight(rig: Rig) -> None:
    import os
    import signal

    before = rig.fake.created_count()
    rig.fake.hang_creates(6)  # the fake makes the prediction, then holds its answer
    job_id = execute(rig)
    wait_for(lambda: rig.fake.created_count() > before, 60, "the create reaching the fake")
    pid = wait_for(lambda: _worker_pid(rig, job_id), 30, "the run worker")
    assert [r.state for r in rig.store.for_job(job_id)] == ["creating"]
    os.kill(pid, signal.SIGKILL)
    assert final_status(rig, job_id, timeout=240) == "completed"
    # The crashed run's retry found the prediction its create had made: none paid twice.
    assert creates_for(rig, job_id) == {"image_edit": 1, "video_generation": 1}


def test_sigkill_of_run_workers_at_any_point_pays_each_prediction_once(rig: Rig) -> None:
    """Each job's worker is killed once, at a different moment of its first run or of a
    continuation (submitting, parking, storing an output): every job still completes,
    and each of its steps' predictions was created once."""
    import os
    import random
    import signal

    chance = random.Random(20261130)
    jobs = [execute(rig) for _ in range(5)]
    delays = {job_id: chance.uniform(0.0, 6.0) for job_id in jobs}
    started = time.monotonic()
    killed: set[str] = set()
    while len(killed) < len(jobs) and time.monotonic() - started < 90:
        for job_id in jobs:
            if job_id in killed or time.monotonic() - started < delays[job_id]:
                continue
            pid = _worker_pid(rig, job_id)
            if pid is not None:
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed.add(job_id)
                except ProcessLookupError:
                    pass  # it ended by itself just now: try its next run
        time.sleep(0.05)
    assert killed, "no run worker was caught running"
    for job_id in jobs:
        assert final_status(rig, job_id, timeout=240) == "completed", job_id
        assert creates_for(rig, job_id) == {"image_edit": 1, "video_generation": 1}, job_id


def test_a_rate_limited_create_falls_back_to_the_next_model(rig: Rig) -> None:
    from tests.fakes.replicate_handler import Fault
    from tests.fakes.replicate_server import THROTTLED

    job_id = execute(rig)
    wait_for(
        lambda: any(r.step == "image_edit" and r.prediction_id for r in rig.store.for_job(job_id)),
        60,
        "the edit created",
    )
    # The video's create (made by the run that finishes the edit) is throttled.
    throttled = {"title": "Request was throttled", "detail": THROTTLED, "status": 429}
    rig.fake.fail_creates(1, Fault(429, throttled, {"Retry-After": "1"}))
    assert final_status(rig, job_id) == "completed"
    runs = job_run_views(rig.stack.instance, job_id)
    failed = [r for r in runs if r.status == "FAILURE"]
    assert [r.tags[t.ERROR_TYPE] for r in failed] == ["rate_limit"]
    video = [r for r in rig.store.for_job(job_id) if r.step == "video_generation"]
    # The refused create made nothing; the retry asked the fallback model, once.
    assert [(r.model, r.state) for r in video] == [
        ("minimax/video-01", "abandoned"),
        ("kling/v1.6", CONSUMED),
    ]
    assert creates_for(rig, job_id) == {"image_edit": 1, "video_generation": 1}
