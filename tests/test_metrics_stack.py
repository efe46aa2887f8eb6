"""Operating it, on one real stack: metrics move as jobs complete, fail, retry and resume;
alerts fire once and clear once (a local webhook receiver and SMTP server); the admin
bulk retry touches exactly the matching jobs; no log line carries a token."""

from __future__ import annotations

import io
import json
import logging
import time
from dataclasses import replace

import dagster as dg
import pytest
from flask import request
from prometheus_client.parser import text_string_to_metric_families

from bridge_api import create_app
from bridge_api.cli.admin import run as admin_cli
from bridge_api.http.logging_json import RequestContext
from resources.alert_channels import AlertChannels
from resources.state_database import StateDatabase
from runtime.stack import DagsterStack
from sensors.alerts import make_alerts_sensor
from tests.alert_receivers import SmtpReceiver, WebhookReceiver
from tests.conftest import SAMPLE_IMAGE
from tests.fakes.supabase_auth import FakeSupabaseAuth
from wf_core.alerting import AlertSettings
from wf_core.logging_json import json_handler
from wf_store.predictions import PredictionStore

pytestmark = [pytest.mark.stack, pytest.mark.timeout(300)]
METRICS_TOKEN = "metrics-secret-7f3a"
WORKFLOW = "img-edit-to-video"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("ops")
    faults = root / "faults.json"
    faults.write_text("{}")
    stack_env = {
        "MEDIA_DIR": str(root / "media"),
        "LOCAL_PROVIDER_FAULTS": str(faults),
        "RETRY_BACKOFF_BASE": "0.5",
        "RETRY_BACKOFF_CAP": "1",
        "RETRY_QUOTA_COOLDOWN": "12",
    }
    with FakeSupabaseAuth() as auth, DagsterStack(root / "home", env=stack_env) as stack:
        app = create_app(
            {
                "DAGSTER_GRAPHQL_URL": stack.graphql_url,
                "STATE_DB_URL": stack.state_db_url,
                "MEDIA_DIR": str(root / "media"),
                "UPLOAD_DIR": str(root / "uploads"),
                "SUPABASE_URL": auth.url,
                "SUPABASE_JWT_SECRET": auth.jwt_secret,
                "RATELIMIT_EXECUTE": "1000 per minute",
                "METRICS_TOKEN": METRICS_TOKEN,
            }
        )
        yield {
            "app": app,
            "client": app.test_client(),
            "auth": auth,
            "stack": stack,
            "faults": faults,
        }


def _headers(env, **claims) -> dict:
    return {"Authorization": f"Bearer {env['auth'].token(**claims)}"}


def _admin(env) -> dict:
    return _headers(env, app_metadata={"role": "admin", "provider": "email"})


def _execute(env, workflow: str = WORKFLOW) -> str:
    data = {"workflow_id": workflow, "file": (io.BytesIO(SAMPLE_IMAGE.read_bytes()), "a.jpg")}
    response = env["client"].post(
        "/workflows/execute", data=data, headers=_headers(env), content_type="multipart/form-data"
    )
    assert response.status_code == 202, response.json
    return response.json["job_id"]


def _wait(predicate, what: str, timeout: float = 120):
    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def _status(env, job_id: str) -> str:
    response = env["client"].get(f"/workflows/execution/{job_id}", headers=_headers(env))
    return response.json["status"]


def _run_job(env, faults: dict, until: str) -> str:
    env["faults"].write_text(json.dumps(faults))
    job_id = _execute(env)
    _wait(lambda: _status(env, job_id) == until, f"job {job_id} {until}")
    return job_id


def scrape(env) -> dict[tuple[str, frozenset], float]:
    """Every sample of GET /metrics."""
    response = env["client"].get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert response.status_code == 200
    samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def total(samples, name: str, **labels) -> float:
    """The sum of the samples of `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


@pytest.fixture(scope="module")
def jobs(env):
    """A job failed for good (content_rejected), one failed once (rate_limit) and retried
    by the sensor, one failed for good otherwise (invalid_input), and the metrics before."""
    before = scrape(env)
    rejected = _run_job(
        env, {"nano-banana": {"error_type": "content_rejected", "times": 1}}, "failed"
    )
    retried = _run_job(
        env, {"minimax/video-01": {"error_type": "rate_limit", "times": 1}}, "completed"
    )
    invalid = _run_job(env, {"nano-banana": {"error_type": "invalid_input", "times": 1}}, "failed")
    env["faults"].write_text("{}")
    return {"before": before, "rejected": rejected, "retried": retried, "invalid": invalid}


def test_metrics_need_the_token(env) -> None:
    assert env["client"].get("/metrics").status_code == 401
    wrong = env["client"].get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json["error"]["code"] == "invalid_token"


def test_metrics_move_as_jobs_complete_fail_and_retry(env, jobs) -> None:
    before = jobs["before"]

    def moved():
        now = scrape(env)
        grew = total(now, "wf_jobs_started_total") - total(before, "wf_jobs_started_total")
        return now if grew >= 3 and _finished(now) - _finished(before) >= 3 else None

    after = _wait(moved, "the metrics sensor to fold three jobs")

    def delta(name: str, **labels) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert delta("wf_jobs_started_total", workflow=WORKFLOW) == 3
    assert delta("wf_jobs_finished_total", workflow=WORKFLOW, status="completed") == 1
    assert delta("wf_jobs_finished_total", status="failed", error_type="content_rejected") == 1
    assert delta("wf_jobs_finished_total", status="failed", error_type="invalid_input") == 1
    assert delta("wf_jobs", workflow=WORKFLOW, status="failed") == 2
    failures = "wf_step_failures_total"
    assert delta(failures, step="video_generation", error_type="rate_limit") == 1
    assert delta(failures, step="image_edit", error_type="content_rejected") == 1
    assert delta("wf_auto_retries_total", workflow=WORKFLOW, outcome="success") == 1
    assert delta("wf_resumes_total", launched_by="retry_sensor", outcome="success") == 1
    assert delta("wf_job_duration_seconds_count", status="completed") == 1
    assert delta("wf_step_duration_seconds_count", step="video_generation", outcome="success") >= 1
    assert delta("wf_provider_latency_seconds_count", provider="local") >= 2
    assert delta("wf_runs_total", outcome="failure") == 3
    assert ("wf_run_queue_depth", frozenset()) in after


def _finished(samples) -> float:
    return total(samples, "wf_jobs_finished_total")


def test_admin_routes_are_404_without_the_admin_role(env) -> None:
    for method, path in (("get", "/admin/jobs"), ("post", "/admin/jobs/retry")):
        response = getattr(env["client"], method)(path, headers=_headers(env), json={})
        assert response.status_code == 404


def test_bulk_retry_touches_exactly_the_matching_jobs(env, jobs) -> None:
    client, headers = env["client"], _admin(env)
    listed = _wait(
        lambda: (
            {
                j["job_id"]
                for j in client.get("/admin/jobs?status=failed", headers=headers).json["jobs"]
            }
            >= {jobs["rejected"], jobs["invalid"]}
            and client.get("/admin/jobs?status=failed", headers=headers).json
        ),
        "both failed jobs in the index",
    )
    assert jobs["retried"] not in {j["job_id"] for j in listed["jobs"]}
    where = {"status": "failed", "error_type": "content_rejected"}
    dry = client.post("/admin/jobs/retry", json={**where, "dry_run": True}, headers=headers).json
    assert dry == {"matched": 1, "acted": 0, "job_ids": [jobs["rejected"]], "skipped": []}
    done = client.post("/admin/jobs/retry", json=where, headers=headers).json
    assert done["matched"] == 1 and done["job_ids"] == [jobs["rejected"]]
    _wait(lambda: _status(env, jobs["rejected"]) == "completed", "the retried job to complete")
    assert _status(env, jobs["invalid"]) == "failed"
    # The resume from its checkpoints is counted once the sensor folds it.
    resumed = {"launched_by": "admin", "outcome": "success"}
    _wait(lambda: total(scrape(env), "wf_resumes_total", **resumed) == 1, "the admin resume")
    # The CLI does the same through the same code: nothing left to retry for that filter.
    status, result = admin_cli(["retry", "--error-type", "content_rejected"], app=env["app"])
    assert status == 0 and result["acted"] == 0
    history = client.get(f"/admin/jobs/{jobs['rejected']}/history", headers=headers).json
    kinds = [e["kind"] for e in history["events"]]
    assert kinds.count("run") == 2 and "error" in kinds and "prediction" in kinds
    runs = [e for e in history["events"] if e["kind"] == "run"]
    assert [r["launched_by"] for r in runs] == ["bridge", "admin"]


def _alert_sensor(env, settings: AlertSettings, clock: list[float], webhook, smtp):
    sensor = make_alerts_sensor(settings, clock=lambda: clock[0])
    stack = env["stack"]
    resources = {
        "predictions": StateDatabase(url=stack.state_db_url),
        "alert_channels": AlertChannels(
            webhook_url=webhook.url,
            smtp_host="127.0.0.1",
            smtp_port=smtp.port,
            smtp_to="ops@example.com",
        ),
    }
    cursor: list[str | None] = [None]

    def tick() -> None:
        context = dg.build_sensor_context(
            instance=stack.instance, resources=resources, cursor=cursor[0]
        )
        result = sensor(context)
        cursor[0] = result.cursor

    return tick


def test_failure_rate_alert_fires_once_and_clears_once(env, jobs) -> None:
    settings = AlertSettings(failure_min_runs=3, ui_url="http://dagster.example")
    clock = [time.time()]
    with WebhookReceiver() as webhook, SmtpReceiver() as smtp:
        tick = _alert_sensor(env, settings, clock, webhook, smtp)
        tick()
        tick()
        [started] = [m for m in webhook.texts() if "failure_rate" in m or WORKFLOW in m]
        assert started.startswith(f"ALERT: {WORKFLOW}")
        assert jobs["invalid"] in started and "http://dagster.example/runs/" in started
        assert [m["Subject"] for m in smtp.messages] == [started.splitlines()[0]]
        clock[0] += settings.failure_window + 60
        tick()
        tick()
        texts = webhook.texts()
        assert len(texts) == 2 and texts[1] == f"RESOLVED: {started.splitlines()[0][7:]}"
        assert len(smtp.messages) == 2


def test_stuck_step_alert_fires_once_and_clears_once(env) -> None:
    settings = replace(AlertSettings(), failure_min_runs=10_000, stuck_after=600)
    store = PredictionStore(env["stack"].state_db_url)
    env["faults"].write_text(json.dumps({"minimax/video-01": {"latency": 20}}))
    job_id = _execute(env)
    parked = lambda: any(p.state == "parked" for p in store.for_job(job_id))  # noqa: E731
    _wait(parked, "the video step to wait on its provider")
    assert total(scrape(env), "wf_jobs_waiting_on_provider", provider="local") == 1
    env["faults"].write_text("{}")
    clock = [time.time() + 700]  # ten minutes on, that step is stuck
    with WebhookReceiver() as webhook, SmtpReceiver() as smtp:
        tick = _alert_sensor(env, settings, clock, webhook, smtp)
        tick()
        tick()
        [started] = webhook.texts()
        assert started.startswith("ALERT: 1 steps running or waiting over 10 min")
        assert job_id in started and "waiting on local" in started
        _wait(lambda: _status(env, job_id) == "completed", "the slow job to complete")
        clock[0] = time.time() + 700 + settings.clear_after
        tick()
        tick()
        assert webhook.texts()[1:] == [f"RESOLVED: {started.splitlines()[0][7:]}"]
        assert len(smtp.messages) == 2


def test_breaker_and_retry_queue_gauges_follow_a_quota_outage(env) -> None:
    quota = {"recraft-crisp-upscale": {"error_type": "quota_exceeded", "times": 1}}
    env["faults"].write_text(json.dumps(quota))
    job_id = _execute(env, "style-transfer-video")
    breaker = {"breaker": "local/recraft-crisp-upscale"}

    def outage():
        now = scrape(env)
        waiting = total(now, "wf_retries_waiting", reason="quota_exceeded")
        return total(now, "wf_breaker_open", **breaker) == 1 and waiting == 1

    _wait(outage, "the open breaker and the waiting retry in /metrics")
    _wait(lambda: _status(env, job_id) == "completed", "the probe to complete the job")
    closed = lambda: total(scrape(env), "wf_breaker_open", **breaker) == 0  # noqa: E731
    _wait(closed, "the closed breaker in /metrics")
    assert total(scrape(env), "wf_retries_waiting", reason="quota_exceeded") == 0


def test_no_log_line_carries_a_token(env, jobs) -> None:
    token, client = env["auth"].token(), env["client"]
    lines = io.StringIO()
    handler = json_handler(lines)
    handler.addFilter(RequestContext())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        bearer = {"Authorization": f"Bearer {token}"}
        client.get(f"/workflows/execution/{jobs['retried']}", headers=bearer)
        client.get("/workflows/jobs", headers={"Authorization": "Bearer not-a-real.jwt.token"})
        client.get(f"/jobs/{jobs['retried']}/stream?access_token={token}")
        client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        client.get("/admin/jobs?status=failed", headers=_admin(env))
        with env["app"].test_request_context("/x", headers=bearer):
            # The classic slip: a request's headers logged whole.
            logging.getLogger("bridge_api").warning("headers: %s", dict(request.headers))
    finally:
        root.removeHandler(handler)
    records = [json.loads(line) for line in lines.getvalue().splitlines()]
    assert any(r.get("path") == f"/jobs/{jobs['retried']}/stream" for r in records)
    assert any(r["msg"].startswith("headers: ") for r in records)
    for secret in (token, token.split(".")[2], "not-a-real.jwt.token", METRICS_TOKEN):
        assert secret not in lines.getvalue()
