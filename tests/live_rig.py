"""The stack of the change-while-in-flight tests, and what they do with it.

The production shape: PostgreSQL, one code server shared by the webserver and the
daemon, the bridge under gunicorn with its config file receiving the signing Replicate
fake's webhooks, predictions long enough that every job parks. Spec files live in a
folder of the test's own (WORKFLOW_SPECS_DIR), read by every process. Each test module
that uses it starts its own (`live_rig`), so the modules can run on different workers.
"""

from __future__ import annotations

import io
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from runtime.stack import DagsterStack
from tests.alert_receivers import WebhookReceiver
from tests.conftest import PG_SERVER_URL, SAMPLE_IMAGE, _server_sql
from tests.fakes.replicate_server import FakeReplicate, Script
from tests.test_gunicorn_serving import Gunicorn
from wf_core.models import MODELS
from wf_core.settings import REPO_ROOT
from wf_store.predictions import PredictionStore

TOKEN = "r8_live_change"
BASE = "img-edit-to-video"
PARKED_SECONDS = 6.0
FINAL = {"completed", "failed", "cancelled"}


@dataclass
class Rig:
    """What the module's tests share."""

    stack: DagsterStack
    fake: FakeReplicate
    store: PredictionStore
    bridge: str
    specs: Path
    alerts: WebhookReceiver


@contextmanager
def live_rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """Start the stack, the bridge under gunicorn and the fakes; stop them all after."""
    root = tmp_path_factory.mktemp("live")
    specs = root / "specs"
    shutil.copytree(REPO_ROOT / "workflow_specs", specs)
    name = f"wf_test_{uuid.uuid4().hex[:12]}"
    _server_sql(f'CREATE DATABASE "{name}"')
    pg_url = f"{PG_SERVER_URL.rsplit('/', 1)[0]}/{name}"
    models = {m.provider_model.partition(":")[0] for m in MODELS.values()}
    videos = {
        m.provider_model.partition(":")[0] for m in MODELS.values() if "image_to_video" in m.tasks
    }
    alerts = WebhookReceiver()
    alerts.__enter__()
    fake = FakeReplicate(TOKEN, models, videos)
    fake.__enter__()
    fake.script = Script(seconds=PARKED_SECONDS)
    common = {
        "WORKFLOW_SPECS_DIR": str(specs),
        "DAGSTER_PG_URL": pg_url,
        "MEDIA_DIR": str(root / "media"),
        "UPLOAD_DIR": str(root / "uploads"),
    }
    bridge_env = {
        k: v for k, v in os.environ.items() if not k.startswith(("RATELIMIT_", "GUNICORN"))
    }
    bridge_env.pop("WEB_CONCURRENCY", None)
    stack = DagsterStack(root / "home", env={})
    gunicorn = Gunicorn(
        root,
        [],
        {
            **bridge_env,
            **common,
            "DAGSTER_HOME": str(root / "home"),
            "DAGSTER_GRAPHQL_URL": stack.graphql_url,
            "AUTH_MODE": "disabled",
            "REPLICATE_WEBHOOK_SECRET": fake.webhook_secret,
            "RATELIMIT_EXECUTE": "10000 per minute",
            "RATELIMIT_RETRY": "10000 per minute",
            "RATELIMIT_KEY_PREFIX": f"live-{uuid.uuid4().hex}",
            "RATELIMIT_STORAGE_URI": "redis://127.0.0.1:6379/0",
        },
    )
    stack.env.update(
        {
            **common,
            "REPLICATE_API_TOKEN": TOKEN,
            "REPLICATE_API_BASE_URL": fake.base_url,
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{gunicorn.port}",
            "POLL_INTERVAL_SECONDS": "20",
            "OWNER_CHECK_INTERVAL_SECONDS": "2",
            "OWNER_CHECK_GRACE_SECONDS": "4",
            "ALERT_WEBHOOK_URL": alerts.url,
            "ALERT_CLEAR_AFTER_SECONDS": "1",
            "ALERT_CHECK_INTERVAL_SECONDS": "3",
            "ALERT_OWNERLESS_WINDOW_SECONDS": "10",  # longer than the alerts tick
            "MAX_CONCURRENT_RUNS": "8",
        }
    )
    try:
        gunicorn.wait_ready()
        stack.start()
        store = PredictionStore(stack.state_db_url)
        yield Rig(stack, fake, store, f"http://127.0.0.1:{gunicorn.port}", specs, alerts)
        store.close()
    finally:
        stack.stop()
        gunicorn.stop()
        fake.__exit__(None, None, None)
        alerts.__exit__(None, None, None)
        _server_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def wait_for(predicate, timeout: float, what: str, poll: float = 0.25):
    """Poll `predicate` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not seen within {timeout:.0f}s")
        time.sleep(poll)


def listed(rig: Rig) -> dict[str, dict]:
    """GET /workflows/list, by id."""
    body = httpx.get(f"{rig.bridge}/workflows/list", timeout=30).json()
    return {w["id"]: w for w in body["workflows"]}


def execute(rig: Rig, workflow_id: str) -> httpx.Response:
    """POST /workflows/execute with the sample image."""
    return httpx.post(
        f"{rig.bridge}/workflows/execute",
        data={"workflow_id": workflow_id},
        files={"file": ("p.jpg", io.BytesIO(SAMPLE_IMAGE.read_bytes()), "image/jpeg")},
        timeout=60,
    )


def started(rig: Rig, workflow_id: str) -> dict:
    """A job of `workflow_id`, accepted."""
    response = execute(rig, workflow_id)
    assert response.status_code == 202, response.text
    return response.json()


def execution(rig: Rig, job_id: str) -> dict:
    """GET /workflows/execution/<job_id> (a 503 while the webserver restarts: None)."""
    try:
        response = httpx.get(f"{rig.bridge}/workflows/execution/{job_id}", timeout=30)
    except httpx.HTTPError:
        return {}
    return response.json() if response.status_code == 200 else {}


def final(rig: Rig, job_ids: list[str], timeout: float) -> dict[str, dict]:
    """Each job's execution document once every one of them is final."""
    found: dict[str, dict] = {}

    def all_final() -> bool:
        for job_id in job_ids:
            if job_id not in found:
                doc = execution(rig, job_id)
                if doc.get("status") in FINAL:
                    found[job_id] = doc
        return len(found) == len(job_ids)

    wait_for(all_final, timeout, f"{len(job_ids)} jobs final")
    return found


def parked(rig: Rig, job_ids: list[str], step: str) -> None:
    """Until each job's `step` prediction is parked at the provider."""

    def all_parked() -> bool:
        rows = rig.store.for_jobs(job_ids)
        return all(any(r.step == step and r.state == "parked" for r in rows[j]) for j in job_ids)

    wait_for(all_parked, 120, f"{step} parked for {len(job_ids)} jobs")


def predictions_per_step(rig: Rig, job_id: str) -> dict[str, list[str]]:
    """The models of each step's predictions for one job (one entry per prediction made)."""
    steps: dict[str, list[str]] = {}
    for row in rig.store.for_job(job_id):
        if row.prediction_id:
            steps.setdefault(row.step, []).append(row.model)
    return steps


def copy_spec(rig: Rig, new_id: str, **changes) -> Path:
    """A copy of the base spec under `new_id` (written whole, then moved into place)."""
    spec = yaml.safe_load((REPO_ROOT / "workflow_specs" / f"{BASE}.yaml").read_text())
    spec.update(id=new_id, name=new_id, **changes)
    return write_spec(rig, spec)


def write_spec(rig: Rig, spec: dict) -> Path:
    """Write a spec as an editor that saves atomically does."""
    path = rig.specs / f"{spec['id']}.yaml"
    tmp = rig.specs / f".{spec['id']}.tmp"
    tmp.write_text(yaml.safe_dump(spec, sort_keys=False))
    tmp.replace(path)
    return path
