"""Change while in flight, on a real stack: specs added, edited and removed under parked
jobs, the webserver, daemon and code server restarted, a job's owner removed by hand.

The stack is the production shape: PostgreSQL, one code server shared by the webserver
and the daemon, the bridge under gunicorn with its config file receiving the signing
Replicate fake's webhooks, predictions long enough that every job parks. Spec files
live in a folder of the test's own (WORKFLOW_SPECS_DIR), read by every process.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import time
import uuid
from collections.abc import Iterator
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
from wf_assets.job_runs import job_run_views
from wf_core import tags as t
from wf_core.models import MODELS
from wf_core.settings import REPO_ROOT
from wf_store.predictions import PredictionStore
from wf_store.spec_versions import SpecVersions

pytestmark = [pytest.mark.stack, pytest.mark.timeout(900)]

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


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
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


def test_an_added_spec_is_listed_within_10s_and_runs_once_listed(rig: Rig) -> None:
    copy_spec(rig, "added-later")
    added = time.monotonic()
    early: list[str] = []
    while "added-later" not in listed(rig):
        # Until it is listed, execute either says it is loading (503 with Retry-After)
        # or, the reload having landed between the two requests, runs it.
        response = execute(rig, "added-later")
        if response.status_code == 202:
            early.append(response.json()["job_id"])
        else:
            assert response.status_code == 503, response.text
            assert response.headers.get("Retry-After")
        assert time.monotonic() - added < 10, "not listed within 10 s"
    took = time.monotonic() - added
    print(f"added spec listed after {took:.1f}s ({len(early)} accepted before)")
    # Never listed while execute would refuse it: listed means it runs, every time.
    ids = [started(rig, "added-later")["job_id"] for _ in range(2)]
    docs = final(rig, [*early, *ids], 180)
    for job_id, doc in docs.items():
        assert doc["status"] == "completed", doc
        assert predictions_per_step(rig, job_id) == {
            "image_edit": ["nano-banana"],
            "video_generation": ["minimax/video-01"],
        }


def test_an_edit_under_3_parked_jobs_leaves_them_on_their_version(rig: Rig) -> None:
    path = copy_spec(rig, "edited-live")
    old_version = wait_for(
        lambda: listed(rig).get("edited-live", {}).get("spec_version"), 30, "edited-live listed"
    )
    jobs = [started(rig, "edited-live") for _ in range(3)]
    assert {j["spec_version"] for j in jobs} == {old_version}
    ids = [j["job_id"] for j in jobs]
    parked(rig, ids, "image_edit")
    # The edit: another default video model and prompt (the old jobs must not see them).
    spec = yaml.safe_load(path.read_text())
    spec["steps"][2]["default_model"] = "kling/v1.6"
    spec["steps"][2]["fallback_models"] = ["minimax/video-01"]
    spec["default_prompts"]["video_generation"] = "A brand new prompt"
    write_spec(rig, spec)
    new_version = wait_for(
        lambda: (
            listed(rig)["edited-live"]["spec_version"] != old_version
            and listed(rig)["edited-live"]["spec_version"]
        ),
        10,
        "the edit listed",
    )
    newer = started(rig, "edited-live")
    assert newer["spec_version"] == new_version
    docs = final(rig, [*ids, newer["job_id"]], 240)
    for job_id in ids:
        assert docs[job_id]["status"] == "completed", docs[job_id]
        assert docs[job_id]["spec_version"] == old_version
        assert predictions_per_step(rig, job_id) == {
            "image_edit": ["nano-banana"],
            "video_generation": ["minimax/video-01"],
        }
    assert docs[newer["job_id"]]["status"] == "completed"
    assert docs[newer["job_id"]]["spec_version"] == new_version
    assert predictions_per_step(rig, newer["job_id"])["video_generation"] == ["kling/v1.6"]
    prompts = [
        row.provider_input.get("prompt")
        for job_id in ids
        for row in rig.store.for_job(job_id)
        if row.step == "video_generation"
    ]
    assert "A brand new prompt" not in prompts


def test_a_removed_spec_under_3_parked_jobs_ends_none_running(rig: Rig) -> None:
    path = copy_spec(rig, "removed-live")
    wait_for(lambda: "removed-live" in listed(rig), 30, "removed-live listed")
    ids = [started(rig, "removed-live")["job_id"] for _ in range(3)]
    parked(rig, ids, "image_edit")
    path.unlink()
    wait_for(lambda: "removed-live" not in listed(rig), 10, "the removal listed")
    response = execute(rig, "removed-live")
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "workflow_not_found"
    docs = final(rig, ids, 240)
    for job_id in ids:
        doc = docs[job_id]
        # Completed on the version it started with (the code keeps a removed workflow
        # defined while jobs run on it); a failure would have to say why.
        assert doc["status"] == "completed" or (doc.get("error") or {}).get("message"), doc
        assert doc["status"] == "completed", doc
        assert {k: len(v) for k, v in predictions_per_step(rig, job_id).items()} == {
            "image_edit": 1,
            "video_generation": 1,
        }


def test_restarts_under_20_parked_jobs_lose_none_and_pay_once(rig: Rig) -> None:
    before = rig.fake.created_count()
    rig.fake.script = Script(seconds=15.0)
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
