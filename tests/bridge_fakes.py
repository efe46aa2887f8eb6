"""A Dagster gateway that records launches, for the bridge's execute tests (issue 15)."""

from __future__ import annotations

import io
import threading
import uuid
from dataclasses import dataclass, field

from bridge_api import create_app
from bridge_api.dagster_client.errors import DagsterUnavailable
from bridge_api.dagster_client.snapshots import JobSnapshot
from tests.conftest import SAMPLE_IMAGE, migrated
from tests.fakes.supabase_auth import LEGACY_SECRET, FakeSupabaseAuth
from wf_core.job_state import RunView


@dataclass
class LaunchingGateway:
    """Adds partitions and launches runs in memory; `fail_launch` makes launches raise as
    the real client does when Dagster is unreachable."""

    partitions: set[str] = field(default_factory=set)
    launches: list[dict] = field(default_factory=list)
    fail_launch: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    # A run's status other than STARTED, by run id; jobs carrying a cancel mark.
    statuses: dict[str, str] = field(default_factory=dict)
    cancelled: set[str] = field(default_factory=set)
    terminated: list[str] = field(default_factory=list)
    # Called with each launch's tags after it is recorded (a race's other side).
    on_launch: object = None

    def add_partition(self, job_id: str) -> None:
        self.partitions.add(job_id)

    def delete_partition(self, job_id: str) -> None:
        self.partitions.discard(job_id)

    def launch(self, job_name, run_config, tags, asset_selection=None) -> str:
        if self.fail_launch:
            raise DagsterUnavailable("Dagster is unreachable")
        run_id = str(uuid.uuid4())
        launch = {
            "run_id": run_id,
            "tags": dict(tags),
            "job": job_name,
            "run_config": run_config,
            "asset_selection": asset_selection,
        }
        with self.lock:
            self.launches.append(launch)
        if callable(self.on_launch):
            self.on_launch(tags)
        return run_id

    def snapshot(self, job_id, specs) -> JobSnapshot:
        runs = [
            RunView(r["run_id"], self.statuses.get(r["run_id"], "STARTED"), r["tags"], 1.0 + i)
            for i, r in enumerate(self.launches)
            if r["tags"].get("wf/job_id") == job_id
        ]
        ids = {run.run_id for run in runs}
        configs = {r["run_id"]: r["run_config"] for r in self.launches if r["run_id"] in ids}
        return JobSnapshot(job_id, runs, {}, job_id in self.cancelled, run_configs=configs)

    def mark_cancelled(self, spec, job_id, description) -> None:
        self.cancelled.add(job_id)

    def terminate(self, run_id) -> bool:
        self.terminated.append(run_id)
        return True


def bridge_app(tmp_path, gateway: LaunchingGateway, **config):
    """The bridge on a SQLite state database in `tmp_path`, HS256 tokens, `gateway` as Dagster."""
    from wf_store.predictions import PredictionStore

    app = create_app(
        {
            "AUTH_MODE": "supabase",
            "SUPABASE_JWT_SECRET": LEGACY_SECRET,
            "MEDIA_DIR": str(tmp_path / "media"),
            "UPLOAD_DIR": str(tmp_path / "uploads"),
            "PREDICTION_STORE": PredictionStore(migrated(f"sqlite:///{tmp_path / 'state.db'}")),
            "RATELIMIT_EXECUTE": "1000 per minute",
            **config,
        }
    )
    app.extensions["dagster"] = gateway
    return app


def bearer(sub: str = "user-a", **claims) -> dict[str, str]:
    """An Authorization header for user `sub`."""
    return {"Authorization": f"Bearer {FakeSupabaseAuth().legacy_token(sub=sub, **claims)}"}


def execute(client, headers: dict[str, str], **fields):
    """POST /workflows/execute with the sample image."""
    data = {
        "workflow_id": "img-edit-to-video",
        "file": (io.BytesIO(SAMPLE_IMAGE.read_bytes()), "photo.jpg"),
        **fields,
    }
    return client.post(
        "/workflows/execute", data=data, headers=headers, content_type="multipart/form-data"
    )
