"""Credits, idempotency and job webhooks end to end: the bridge on a real dagster-webserver
and daemon (the credits and callbacks sensors running in it), offline models.

Each story ends with the ledger summing to the expected balance: success, permanent
failure, cancel, a retry by hand after a permanent failure, and a run worker SIGKILLed
mid-step (its run resumed by the crash detector and the retry sensor).
"""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import time

import pytest

from bridge_api import create_app
from runtime.stack import DagsterStack
from tests.callback_receiver import CallbackReceiver
from tests.conftest import SAMPLE_IMAGE
from wf_assets.job_runs import job_run_views
from wf_core import tags as t
from wf_store.credits import CreditStore, totals
from wf_store.state_db import engine_for

pytestmark = [pytest.mark.stack, pytest.mark.timeout(600)]

SECRET = "whsec_" + base64.b64encode(b"s" * 32).decode()
USER = "local-dev"  # AUTH_MODE=disabled


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    root = tmp_path_factory.mktemp("credits")
    faults = root / "faults.json"
    faults.write_text("{}")
    env = {
        "MEDIA_DIR": str(root / "media"),
        "LOCAL_PROVIDER_FAULTS": str(faults),
        "RETRY_BACKOFF_BASE": "0.5",
        "RETRY_BACKOFF_CAP": "1",
        "CALLBACK_SIGNING_SECRET": SECRET,
        # The test's receiver listens on loopback: the operator allows that host.
        "CALLBACK_ALLOWED_HOSTS": "127.0.0.1",
        "ALLOW_HTTP_CALLBACKS": "on",
    }
    with DagsterStack(root / "home", env=env) as stack:
        app = create_app(
            {
                "DAGSTER_GRAPHQL_URL": stack.graphql_url,
                "MEDIA_DIR": str(root / "media"),
                "UPLOAD_DIR": str(root / "uploads"),
                "AUTH_MODE": "disabled",
                "STATE_DB_URL": stack.state_db_url,
                "CREDITS": "on",
                "CALLBACK_SIGNING_SECRET": SECRET,
                "ALLOW_HTTP_CALLBACKS": "on",
                "CALLBACK_ALLOWED_HOSTS": "127.0.0.1",
                "RATELIMIT_EXECUTE": "1000 per minute",
                "RATELIMIT_RETRY": "1000 per minute",
            }
        )
        engine = engine_for(stack.state_db_url)
        credits = CreditStore(engine)
        yield {"stack": stack, "client": app.test_client(), "faults": faults, "credits": credits}
        engine.dispose()


def execute(rig, headers=None, **fields):
    data = {
        "workflow_id": "img-edit-to-video",
        "file": (io.BytesIO(SAMPLE_IMAGE.read_bytes()), "a.jpg"),
    }
    return rig["client"].post(
        "/workflows/execute",
        data={**data, **fields},
        headers=headers or {},
        content_type="multipart/form-data",
    )


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def status(rig, job_id: str) -> str:
    return rig["client"].get(f"/workflows/execution/{job_id}").json["status"]


def settled(rig, job_id: str) -> list[tuple[str, str, int]]:
    """The job's ledger rows once its hold is closed by the sensor (or the cancel)."""
    credits = rig["credits"]
    wait_for(lambda: credits.hold(job_id).open is False, 60, "the hold settled")
    return [(e.kind, e.step, e.amount) for e in credits.job_entries(job_id)]


def balance(rig) -> tuple[int, int]:
    """The account, checked against the ledger's own sum."""
    credits = rig["credits"]
    entries, _ = credits.entries(USER, limit=1000)
    account = credits.account(USER)
    assert (account.balance, account.reserved) == (
        totals(entries).balance,
        totals(entries).reserved,
    )
    return account.balance, account.reserved


def faults(rig, value: dict) -> None:
    rig["faults"].write_text(json.dumps(value))


def test_success_once_per_idempotency_key_with_a_signed_webhook(rig) -> None:
    rig["credits"].grant(USER, 100, "test")
    start = balance(rig)[0]
    with CallbackReceiver(SECRET, [500, 204]) as receiver:
        headers = {"Idempotency-Key": "order-1"}
        first = execute(rig, headers, callback_url=receiver.url)
        again = execute(rig, headers, callback_url=receiver.url)
        assert first.status_code == again.status_code == 202
        assert again.json == first.json
        job_id = first.json["job_id"]
        wait_for(lambda: status(rig, job_id) == "completed", 120, "the job completed")
        assert len(job_run_views(rig["stack"].instance, job_id)) == 1
        assert settled(rig, job_id) == [
            ("reserve", "#1", 50),
            ("capture", "image_edit", 25),
            ("capture", "video_generation", 25),
        ]
        assert balance(rig) == (start - 50, 0)
        # The first delivery is answered 500; the retry (after its backoff) is taken.
        wait_for(lambda: len(receiver.deliveries) == 2, 60, "the webhook retried")
    assert [d["verified"] for d in receiver.deliveries] == [True, True]
    assert receiver.deliveries[1]["body"]["type"] == "job.completed"
    assert receiver.deliveries[1]["body"]["job"]["result"]["video_url"]


def test_permanent_failure_then_retry_by_hand_charges_each_step_once(rig) -> None:
    rig["credits"].grant(USER, 50, "test")
    start = balance(rig)[0]
    faults(rig, {"image_to_video": {"error_type": "content_rejected"}})
    job_id = execute(rig).json["job_id"]
    wait_for(lambda: status(rig, job_id) == "failed", 120, "the job failed")
    assert settled(rig, job_id) == [
        ("reserve", "#1", 50),
        ("capture", "image_edit", 25),
        ("release", "#1", 25),
    ]
    assert balance(rig) == (start - 25, 0)
    faults(rig, {})
    assert rig["client"].post(f"/workflows/retry/{job_id}").status_code == 202
    assert balance(rig)[1] == 25  # only the unfinished step is held again
    wait_for(lambda: status(rig, job_id) == "completed", 120, "the retried job completed")
    rows = settled(rig, job_id)
    assert rows[3:] == [("reserve", "#2", 25), ("capture", "video_generation", 25)]
    assert balance(rig) == (start - 50, 0)


def test_cancel_mid_job_releases_the_rest(rig) -> None:
    rig["credits"].grant(USER, 50, "test")
    start = balance(rig)[0]
    faults(rig, {"image_to_video": {"delay": 30, "times": 1}})
    job_id = execute(rig).json["job_id"]
    wait_for(
        lambda: rig["credits"].job_entries(job_id)[-1].kind == "capture", 60, "image_edit paid"
    )
    assert rig["client"].post(f"/workflows/cancel/{job_id}").status_code == 200
    assert settled(rig, job_id) == [
        ("reserve", "#1", 50),
        ("capture", "image_edit", 25),
        ("release", "#1", 25),
    ]
    assert balance(rig) == (start - 25, 0)
    faults(rig, {})


def test_a_run_worker_sigkilled_mid_step_is_charged_once(rig) -> None:
    rig["credits"].grant(USER, 50, "test")
    start = balance(rig)[0]
    faults(rig, {"image_to_video": {"delay": 30, "times": 1}})
    job_id = execute(rig).json["job_id"]

    def worker_in_video_step() -> int | None:
        if [e.step for e in rig["credits"].job_entries(job_id)][-1:] != ["image_edit"]:
            return None
        for run in job_run_views(rig["stack"].instance, job_id):
            if run.status == "STARTED" and t.WORKER in run.tags:
                return int(run.tags[t.WORKER].rsplit(":", 2)[1])
        return None

    pid = wait_for(worker_in_video_step, 60, "the run worker inside the video step")
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: status(rig, job_id) == "completed", 240, "the job resumed and completed")
    assert settled(rig, job_id) == [
        ("reserve", "#1", 50),
        ("capture", "image_edit", 25),
        ("capture", "video_generation", 25),
    ]
    assert balance(rig) == (start - 50, 0)
    assert len(job_run_views(rig["stack"].instance, job_id)) >= 2  # the killed run and its retry
