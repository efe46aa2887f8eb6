"""Retry and cancel are one implementation for users and operators: the same holds,
captures and releases, the same launch, and a retry that loses to a cancel says so (409).
Operators reach it three ways (the jobs service, the admin routes, `wf-admin`): each is
checked against a user's retry or cancel of a job in the same state."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from bridge_api.cli.admin import run as admin_cli
from bridge_api.jobs import bulk
from tests.bridge_fakes import LaunchingGateway, bearer, bridge_app, execute
from wf_core import tags as t
from wf_core.job_record import JobRecord
from wf_store.credits import CreditStore
from wf_store.schema import jobs

USER = "user-a"
WORKFLOW = "img-edit-to-video"
T0 = 1_800_000_000.0
PERMANENT = {t.ERROR_TYPE: "invalid_input", t.RETRYABLE: "false", t.FAILED_STEP: "image_edit"}


@pytest.fixture
def app(tmp_path):
    return bridge_app(tmp_path, LaunchingGateway(), CREDITS="on")


def credits(app) -> CreditStore:
    return CreditStore(app.config["PREDICTION_STORE"].engine)


def failed_job(app) -> str:
    """A job whose first run failed for good, its hold settled as the sensor does."""
    client = app.test_client()
    credits(app).grant(USER, 500, "test")
    job_id = execute(client, bearer(USER)).json["job_id"]
    gateway: LaunchingGateway = app.extensions["dagster"]
    run = gateway.launches[-1]
    run["tags"].update(PERMANENT)
    gateway.statuses[run["run_id"]] = "FAILURE"
    credits(app).settle(job_id, ["upload"], "failed")  # upload's share is 0: all released
    return job_id


def ledger(app, job_id: str) -> list[tuple[str, str, int]]:
    return [(e.kind, e.step, e.amount) for e in credits(app).job_entries(job_id)]


def test_an_admin_retry_holds_like_a_users_retry(app) -> None:
    by_user, by_admin = failed_job(app), failed_job(app)
    client = app.test_client()
    assert client.post(f"/workflows/retry/{by_user}", headers=bearer(USER)).status_code == 202
    with app.test_request_context():
        bulk.retry_job(by_admin, "img-edit-to-video", "ops@example.com")
    assert ledger(app, by_user)[-1] == ("reserve", "#2", 50)
    assert ledger(app, by_admin) == ledger(app, by_user)
    assert credits(app).hold(by_admin).open
    # Both complete: the same captures close both holds.
    for job_id in (by_user, by_admin):
        credits(app).settle(job_id, ["upload", "image_edit", "video_generation"], "completed")
    assert ledger(app, by_admin) == ledger(app, by_user)
    assert [kind for kind, _, _ in ledger(app, by_admin)].count("capture") == 2
    launched = app.extensions["dagster"].launches[-1]["tags"]
    assert launched[t.LAUNCHED_BY] == "admin" and launched["wf/actor"] == "ops@example.com"


def test_an_admin_cancel_settles_at_once_like_a_users(app) -> None:
    client = app.test_client()
    credits(app).grant(USER, 500, "test")
    by_user = execute(client, bearer(USER)).json["job_id"]
    by_admin = execute(client, bearer(USER)).json["job_id"]
    assert client.post(f"/workflows/cancel/{by_user}", headers=bearer(USER)).status_code == 200
    with app.test_request_context():
        bulk.cancel_job(by_admin, "img-edit-to-video", "ops@example.com")
    for job_id in (by_user, by_admin):
        assert not credits(app).hold(job_id).open
    assert ledger(app, by_admin) == ledger(app, by_user)
    assert app.extensions["dagster"].cancelled == {by_user, by_admin}


def test_a_retry_that_loses_to_a_cancel_is_a_409(app) -> None:
    job_id = failed_job(app)
    gateway: LaunchingGateway = app.extensions["dagster"]
    # The cancel lands while the retry's run is being launched.
    gateway.on_launch = lambda tags: gateway.cancelled.add(tags[t.JOB_ID])
    answer = app.test_client().post(f"/workflows/retry/{job_id}", headers=bearer(USER))
    assert answer.status_code == 409, answer.json
    assert answer.json["error"]["code"] == "invalid_state"
    assert answer.json["error"]["job_status"] == "cancelled"
    assert gateway.terminated == [gateway.launches[-1]["run_id"]]
    assert not credits(app).hold(job_id).open  # what the retry held went back


def test_a_cancel_after_the_provider_finished_a_step_charges_that_step(app) -> None:
    client = app.test_client()
    credits(app).grant(USER, 500, "test")
    job_id = execute(client, bearer(USER)).json["job_id"]
    store = app.config["PREDICTION_STORE"]
    # image_edit's prediction succeeded at the provider (billed); no checkpoint yet.
    intent = store.intend(
        job_id=job_id,
        step="image_edit",
        attempt=1,
        workflow_id="img-edit-to-video",
        provider="replicate",
        model="nano-banana",
        provider_model="google/nano-banana",
        input_digest="d",
        provider_input={"prompt": "p"},
        run_id="r1",
    )
    store.created(intent.id, "pred-1", "processing", next_poll_at=0.0)
    store.apply_provider_update({"id": "pred-1", "status": "succeeded", "output": "x"}, "webhook")
    assert client.post(f"/workflows/cancel/{job_id}", headers=bearer(USER)).status_code == 200
    assert ledger(app, job_id) == [
        ("reserve", "#1", 50),
        ("capture", "image_edit", 25),
        ("release", "#1", 25),
    ]


def indexed(app, job_id: str, status: str) -> None:
    """The job's row in the job read model (admins find jobs there; issue 23: it was the
    metrics sensor's job index)."""
    row = {
        "job_id": job_id, "workflow_id": WORKFLOW, "user_id": USER, "status": status,
        "error_type": None, "failed_step": None, "attempt": 1, "run_id": None,
        "created_at": T0, "updated_at": T0, "version": 1,
        "record": JobRecord(job_id).to_json(),
    }  # fmt: skip
    with app.config["PREDICTION_STORE"].engine.begin() as conn:
        conn.execute(jobs.delete().where(jobs.c.job_id == job_id))
        conn.execute(jobs.insert().values(**row))


def admin_by_service(app, action: str, job_id: str) -> None:
    with app.test_request_context():
        act = bulk.retry_job if action == "retry" else bulk.cancel_job
        act(job_id, WORKFLOW, "ops@example.com")


def admin_by_route(app, action: str, job_id: str) -> None:
    indexed(app, job_id, "failed" if action == "retry" else "running")
    admin = bearer("ops-1", app_metadata={"role": "admin"})
    body = {"user_id": USER}
    answer = app.test_client().post(f"/admin/jobs/{action}", json=body, headers=admin)
    assert answer.status_code == 200, answer.json
    assert answer.json["job_ids"] == [job_id], answer.json


def admin_by_cli(app, action: str, job_id: str) -> None:
    indexed(app, job_id, "failed" if action == "retry" else "running")
    status, result = admin_cli([action, "--user-id", USER], app)
    assert status == 0 and result["job_ids"] == [job_id], result


ADMIN_PATHS = [admin_by_service, admin_by_route, admin_by_cli]
Admin = Callable[..., None]


def launch_of(app, job_id: str) -> tuple:
    """What the job's last run was launched with, but for the job's own ids (its own and
    its runs') and who asked."""
    gateway: LaunchingGateway = app.extensions["dagster"]
    runs = [run for run in gateway.launches if run["tags"][t.JOB_ID] == job_id]
    launch = runs[-1]
    tags = {k: v for k, v in launch["tags"].items() if k not in (t.LAUNCHED_BY, "wf/actor")}
    shape = json.dumps([launch["job"], launch["run_config"], launch["asset_selection"], tags])
    for n, run in enumerate(runs):
        shape = shape.replace(run["run_id"], f"<run {n}>")
    return tuple(json.loads(shape.replace(job_id, "<job>")))


@pytest.mark.parametrize("admin", ADMIN_PATHS, ids=lambda f: f.__name__)
def test_every_admin_retry_holds_and_launches_as_a_users_retry(app, admin: Admin) -> None:
    by_user, by_admin = failed_job(app), failed_job(app)
    answer = app.test_client().post(f"/workflows/retry/{by_user}", headers=bearer(USER))
    assert answer.status_code == 202, answer.json
    admin(app, "retry", by_admin)
    # The same hold, taken again for the unfinished steps.
    assert ledger(app, by_user)[-1] == ("reserve", "#2", 50)
    assert ledger(app, by_admin) == ledger(app, by_user)
    assert credits(app).hold(by_admin).open
    # The same launch: job, run config (the job's own input), steps and tags.
    job, run_config, steps, tags = launch_of(app, by_admin)
    assert (job, run_config, steps, tags) == launch_of(app, by_user)
    # No checkpoint in the fake: the retry resumes from the first step.
    assert steps == [[WORKFLOW, "upload"], [WORKFLOW, "image_edit"], [WORKFLOW, "video_generation"]]
    assert tags[t.ATTEMPT] == "2" and tags["wf/parent_run"] == "<run 0>"
    source = run_config["ops"]["img_edit_to_video__upload"]["config"]["source"]
    assert "<job>" in source  # the retry reads the job's own upload
    launched_by = {run["tags"][t.LAUNCHED_BY] for run in app.extensions["dagster"].launches}
    assert {"manual_retry", "admin"} <= launched_by


@pytest.mark.parametrize("admin", ADMIN_PATHS, ids=lambda f: f.__name__)
def test_every_admin_cancel_settles_at_once_as_a_users(app, admin: Admin) -> None:
    client = app.test_client()
    credits(app).grant(USER, 500, "test")
    by_user = execute(client, bearer(USER)).json["job_id"]
    by_admin = execute(client, bearer(USER)).json["job_id"]
    assert credits(app).hold(by_admin).open
    assert client.post(f"/workflows/cancel/{by_user}", headers=bearer(USER)).status_code == 200
    admin(app, "cancel", by_admin)
    # Settled at once, not left for the credits sensor: the hold is closed, all released.
    for job_id in (by_user, by_admin):
        assert not credits(app).hold(job_id).open
    assert (
        ledger(app, by_admin)
        == ledger(app, by_user)
        == [
            ("reserve", "#1", 50),
            ("release", "#1", 50),
        ]
    )
    gateway: LaunchingGateway = app.extensions["dagster"]
    assert gateway.cancelled == {by_user, by_admin}
    assert credits(app).account(USER).reserved == 0
