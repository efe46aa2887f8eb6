"""A step waiting on its provider, as the bridge shows it: the execution document's provider
block, the jobs list, the cancel that stops the prediction, and the stream's progress.

Dagster's side is a scripted gateway (snapshots as GraphQL would give them); the
prediction store is real, on SQLite in the test's folder.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from bridge_api import create_app
from bridge_api.dagster_client.snapshots import JobSnapshot
from bridge_api.jobs.execution_view import execution_view, iso
from tests.conftest import migrated
from tests.fakes.clock import FakeClock
from wf_core import tags as t
from wf_core.checkpoint import Checkpoint
from wf_core.job_ids import new_job_id
from wf_core.job_state import RunView
from wf_core.retry_policy import RetrySettings
from wf_store import predictions as p

WORKFLOW = "img-edit-to-video"
NOW = 1_790_000_000.0
RUN_START = NOW - 30
BASE_MS = int(RUN_START * 1000)
OPS = {
    "upload": "img_edit_to_video__upload",
    "image_edit": "img_edit_to_video__image_edit",
    "video_generation": "img_edit_to_video__video_generation",
}


@pytest.fixture
def store(tmp_path):
    store = p.PredictionStore(migrated(f"sqlite:///{tmp_path / 'state.db'}"), clock=FakeClock(NOW))
    yield store
    store.close()


@pytest.fixture
def spec(specs):
    return specs[WORKFLOW]


def _checkpoint(step: str, at: float) -> Checkpoint:
    done = datetime.fromtimestamp(at, UTC).isoformat()
    index = ["upload", "image_edit", "video_generation"].index(step)
    output = {"url": f"/media/{step}.png"}
    return Checkpoint(WORKFLOW, "job", step, index, "image", step, output, "run-1", done, done)


def _parked_row(store: p.PredictionStore, job_id: str, step: str = "image_edit") -> p.Prediction:
    intent = store.intend(
        job_id=job_id,
        step=step,
        attempt=1,
        workflow_id=WORKFLOW,
        provider="replicate",
        model="nano-banana",
        provider_model="google/nano-banana",
        input_digest="d" * 64,
        provider_input={"prompt": "x"},
        run_id="run-1",
    )
    return store.created(intent.id, f"pred-{intent.id[-12:]}", "starting", next_poll_at=NOW + 60)


def _run(job_id: str, status: str = "SUCCESS", run_id: str = "run-1", **tags: str) -> RunView:
    base = t.job_tags(WORKFLOW, job_id, "local-dev", "bridge")
    return RunView(run_id, status, {**base, **tags}, RUN_START)


def _parked_snapshot(job_id: str, intent_id: str = "i") -> JobSnapshot:
    """The run that created image_edit's prediction ended; upload is checkpointed."""
    run = _run(job_id, **{t.PARKED_STEP: "image_edit", t.PARKED_PREDICTION: intent_id})
    times = {"run-1": {"start": RUN_START, "end": RUN_START + 5, "updated": RUN_START + 5}}
    return JobSnapshot(
        job_id, [run], {"upload": _checkpoint("upload", RUN_START + 1)}, False, times
    )


def test_a_parked_step_is_running_with_its_provider(spec, store) -> None:
    job_id = new_job_id()
    row = _parked_row(store, job_id)
    store.polled(row.id, "processing", 40, next_poll_at=NOW + 60)
    doc = execution_view(
        spec, _parked_snapshot(job_id, row.id), RetrySettings(), store.for_job(job_id)
    )
    assert doc["status"] == "running" and doc["current_step"] == 1
    step = doc["checkpoints"]["1"]
    assert step["status"] == "running"
    assert step["provider"] == {
        "name": "replicate",
        "prediction_id": row.prediction_id,
        "status": "processing",
        "progress": 40,
    }
    assert step["started_at"] == iso(row.created_at)
    assert doc["checkpoints"]["0"]["status"] == "completed"
    assert doc["checkpoints"]["2"] == {
        "step_name": "video_generation",
        "step_type": "generation",
        "status": "pending",
    }
    assert doc["updated_at"] == iso(NOW)  # the provider's last word, after the run's end


def test_a_prediction_still_being_created_shows_starting_with_no_progress(spec, store) -> None:
    job_id = new_job_id()
    intent = store.intend(
        job_id=job_id,
        step="image_edit",
        attempt=1,
        workflow_id=WORKFLOW,
        provider="replicate",
        model="nano-banana",
        provider_model="google/nano-banana",
        input_digest="d" * 64,
        provider_input={},
        run_id="run-1",
    )
    run = _run(job_id, "STARTED")
    times = {"run-1": {"start": RUN_START, "end": None, "updated": RUN_START}}
    snapshot = JobSnapshot(job_id, [run], {"upload": _checkpoint("upload", NOW - 20)}, False, times)
    doc = execution_view(spec, snapshot, RetrySettings(), store.for_job(job_id))
    step = doc["checkpoints"]["1"]
    assert step["provider"] == {"name": "replicate", "prediction_id": None, "status": "starting"}
    assert step["started_at"] == iso(intent.created_at)


def test_without_the_store_a_parked_step_is_still_running(spec) -> None:
    doc = execution_view(spec, _parked_snapshot(new_job_id()), RetrySettings(), [])
    step = doc["checkpoints"]["1"]
    assert step["status"] == "running" and "provider" not in step
    assert step["started_at"] == iso(RUN_START)


def test_a_prediction_the_provider_finished_shows_no_provider_block(spec, store) -> None:
    job_id = new_job_id()
    row = _parked_row(store, job_id)
    store.apply_provider_update({"id": row.prediction_id, "status": "succeeded"}, "webhook")
    doc = execution_view(
        spec, _parked_snapshot(job_id, row.id), RetrySettings(), store.for_job(job_id)
    )
    step = doc["checkpoints"]["1"]
    assert step["status"] == "running" and "provider" not in step


def test_the_newest_row_of_the_step_counts(spec, store) -> None:
    job_id = new_job_id()
    old = _parked_row(store, job_id)
    store.abandon(old.id, "the step's model or input changed")
    store.clock.now = NOW + 1
    new = _parked_row(store, job_id)
    doc = execution_view(
        spec, _parked_snapshot(job_id, new.id), RetrySettings(), store.for_job(job_id)
    )
    assert doc["checkpoints"]["1"]["provider"]["prediction_id"] == new.prediction_id


def test_a_job_that_is_not_running_shows_no_provider(spec, store) -> None:
    job_id = new_job_id()
    _parked_row(store, job_id)
    cancelled = _parked_snapshot(job_id)
    cancelled.cancelled = True
    doc = execution_view(spec, cancelled, RetrySettings(), store.for_job(job_id))
    assert doc["status"] == "cancelled"
    assert all("provider" not in entry for entry in doc["checkpoints"].values())


# -- through the routes -------------------------------------------------------------------


@dataclass
class ScriptedGateway:
    """Dagster as the bridge sees it: each `snapshot` call takes the next of `snapshots`
    (the last one repeats) after running that call's `before` hook, if any."""

    job_id: str
    snapshots: list[JobSnapshot]
    logs: dict[str, list[dict]] = field(default_factory=dict)
    before: dict[int, Callable[[], None]] = field(default_factory=dict)
    calls: int = 0
    marked: list[str] = field(default_factory=list)

    def snapshot(self, job_id, specs) -> JobSnapshot:
        if self.calls in self.before:
            self.before[self.calls]()
        snap = self.snapshots[min(self.calls, len(self.snapshots) - 1)]
        self.calls += 1
        return snap

    def progress(self, run_id, after):
        lines = self.logs.get(run_id, [])
        return lines[int(after or 0) :], str(len(lines))

    def job_ids_for_user(self, user, limit, cursor):
        return [(self.job_id, WORKFLOW)], None

    def jobs_page(self, user, limit, cursor, specs):
        return [self.snapshot(self.job_id, specs)], None

    def mark_cancelled(self, spec, job_id, description) -> None:
        self.marked.append(job_id)

    def terminate(self, run_id) -> bool:
        return True


def _app(tmp_path, store, gateway):
    app = create_app(
        {
            "AUTH_MODE": "disabled",
            "MEDIA_DIR": str(tmp_path / "media"),
            "UPLOAD_DIR": str(tmp_path / "uploads"),
            "PREDICTION_STORE": store,
            "STREAM_POLL_SECONDS": 0.0,
            "STREAM_ACTIVE_POLL_SECONDS": 0.0,
        }
    )
    app.extensions["dagster"] = gateway
    return app


def test_the_execution_route_shows_the_provider(tmp_path, store) -> None:
    job_id = new_job_id()
    row = _parked_row(store, job_id)
    app = _app(tmp_path, store, ScriptedGateway(job_id, [_parked_snapshot(job_id, row.id)]))
    doc = app.test_client().get(f"/workflows/execution/{job_id}").json
    assert doc["checkpoints"]["1"]["provider"]["prediction_id"] == row.prediction_id


def test_an_unreachable_store_leaves_the_provider_out(tmp_path) -> None:
    job_id = new_job_id()
    broken = p.PredictionStore(f"sqlite:///{tmp_path}")  # a folder, not a database file
    app = _app(tmp_path, broken, ScriptedGateway(job_id, [_parked_snapshot(job_id)]))
    client = app.test_client()
    response = client.get(f"/workflows/execution/{job_id}")
    assert response.status_code == 200
    step = response.json["checkpoints"]["1"]
    assert step["status"] == "running" and "provider" not in step
    listed = client.get("/workflows/jobs")
    assert listed.status_code == 200 and listed.json["jobs"][0]["status"] == "running"


def test_the_jobs_list_reads_the_store_for_its_running_jobs(tmp_path, store) -> None:
    job_id = new_job_id()
    row = _parked_row(store, job_id)
    store.clock.now = NOW + 7
    store.polled(row.id, "processing", 10, next_poll_at=NOW + 60)
    app = _app(tmp_path, store, ScriptedGateway(job_id, [_parked_snapshot(job_id, row.id)]))
    summary = app.test_client().get("/workflows/jobs").json["jobs"][0]
    assert summary["status"] == "running" and summary["current_step"] == 1
    assert summary["updated_at"] == iso(NOW + 7)
    assert "checkpoints" not in summary


def test_cancel_asks_for_the_prediction_to_be_stopped(tmp_path, store) -> None:
    job_id = new_job_id()
    row = _parked_row(store, job_id)
    gateway = ScriptedGateway(job_id, [_parked_snapshot(job_id, row.id)])
    response = _app(tmp_path, store, gateway).test_client().post(f"/workflows/cancel/{job_id}")
    assert response.status_code == 200 and gateway.marked == [job_id]
    assert store.get(row.id).state == p.CANCEL_REQUESTED
    assert [r.id for r in store.cancel_requests(10)] == [row.id]


def test_cancel_succeeds_when_the_store_does_not(tmp_path) -> None:
    job_id = new_job_id()
    broken = p.PredictionStore(f"sqlite:///{tmp_path}")
    gateway = ScriptedGateway(job_id, [_parked_snapshot(job_id)])
    response = _app(tmp_path, broken, gateway).test_client().post(f"/workflows/cancel/{job_id}")
    assert response.status_code == 200 and response.json["status"] == "cancelled"
    assert gateway.marked == [job_id]


# -- the stream ---------------------------------------------------------------------------


def _log(step: str, ms: int, message: str = "", kind: str = "LogMessageEvent") -> dict:
    return {"__typename": kind, "message": message, "stepKey": OPS[step],
            "timestamp": str(BASE_MS + ms)}  # fmt: skip


def _finished_snapshot(job_id: str, intent_id: str) -> JobSnapshot:
    parked = _parked_snapshot(job_id, intent_id)
    continuation = RunView(
        "run-2",
        "SUCCESS",
        {**t.job_tags(WORKFLOW, job_id, "local-dev", "sensor"), t.CONTINUES: intent_id},
        RUN_START + 60,
    )
    checkpoints = {
        **parked.checkpoints,
        "image_edit": _checkpoint("image_edit", RUN_START + 61),
        "video_generation": _checkpoint("video_generation", RUN_START + 62),
    }
    times = {**parked.run_times, "run-2": {"start": RUN_START + 60, "end": RUN_START + 62,
                                           "updated": RUN_START + 62}}  # fmt: skip
    return JobSnapshot(job_id, [continuation, *parked.runs], checkpoints, False, times)


def _stream(app, job_id: str, last_event_id: str | None = None) -> list[dict]:
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    body = app.test_client().get(f"/jobs/{job_id}/stream", headers=headers).get_data(True)
    events = []
    for block in body.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in fields:
            events.append({"id": fields["id"], "event": fields["event"],
                           "data": json.loads(fields["data"])})  # fmt: skip
    return events


def _parked_gateway(store, job_id: str, row: p.Prediction, script: dict) -> ScriptedGateway:
    """Parked until the last hook has run, then finished by a continuation run."""
    last = max(script) + 1
    snapshots = [_parked_snapshot(job_id, row.id)] * last + [_finished_snapshot(job_id, row.id)]
    logs = {
        "run-1": [
            _log("upload", 0, kind="ExecutionStepStartEvent"),
            _log("image_edit", 2000, kind="ExecutionStepStartEvent"),
            _log("image_edit", 2500, "progress 15% Waiting for replicate (starting)"),
        ]
    }
    return ScriptedGateway(job_id, snapshots, logs, script)


def _provider_said(store, row, status: str, progress: int | None) -> Callable[[], None]:
    update = {"id": row.prediction_id, "status": status, "progress": progress}
    return lambda: store.apply_provider_update(update, "webhook")


def test_the_stream_sends_provider_progress_when_it_changes(tmp_path, store) -> None:
    job_id = new_job_id()
    row = _parked_row(store, job_id)
    script = {
        # call 0 is the route's ownership check; the stream polls from call 1.
        2: _provider_said(store, row, "processing", 40),
        4: _provider_said(store, row, "processing", 70),
        6: _provider_said(store, row, "succeeded", None),
    }
    app = _app(tmp_path, store, _parked_gateway(store, job_id, row, script))
    events = _stream(app, job_id)
    provider = [e for e in events if e["event"] == "progress" and "provider" in e["data"]]
    assert [e["data"]["progress"] for e in provider] == [40, 70]
    assert provider[0]["data"] == {
        "step": 1,
        "step_name": "image_edit",
        "progress": 40,
        "message": "Waiting for replicate (processing)",
        "provider": {
            "name": "replicate",
            "prediction_id": row.prediction_id,
            "status": "processing",
            "progress": 40,
        },
    }
    # Not counted in the ids: each carries the id of the event before it.
    for event in provider:
        before = events[events.index(event) - 1]
        assert event["id"] == before["id"]
    assert events[-1]["event"] == "complete"
    checkpoints = [e["data"]["step_name"] for e in events if e["event"] == "checkpoint"]
    assert checkpoints == ["upload", "image_edit", "video_generation"]


def test_a_reconnect_gets_the_current_provider_progress_once_more(tmp_path, store) -> None:
    job_id = new_job_id()
    row = _parked_row(store, job_id)
    first = _stream(
        _app(
            tmp_path,
            store,
            _parked_gateway(store, job_id, row, {2: _provider_said(store, row, "processing", 40)}),
        ),
        job_id,
    )
    cut = next(e for e in first if "provider" in e["data"])
    # Back while still parked: nothing durable was missed, the level is sent again.
    script = {3: _provider_said(store, row, "processing", 55)}
    again = _stream(
        _app(tmp_path, store, _parked_gateway(store, job_id, row, script)), job_id, cut["id"]
    )
    durable_before_cut = {json.dumps(e, sort_keys=True) for e in first[: first.index(cut)]}
    assert not durable_before_cut & {json.dumps(e, sort_keys=True) for e in again}
    levels = [e["data"]["progress"] for e in again if "provider" in e["data"]]
    assert levels == [40, 55]
    assert again[-1]["event"] == "complete"


def test_no_provider_progress_means_no_provider_events(tmp_path, store) -> None:
    job_id = new_job_id()
    row = _parked_row(store, job_id)
    script = {2: _provider_said(store, row, "processing", None)}
    events = _stream(_app(tmp_path, store, _parked_gateway(store, job_id, row, script)), job_id)
    assert not [e for e in events if "provider" in e["data"]]
    assert events[-1]["event"] == "complete"


def test_an_unknown_job_id_is_still_a_404_and_reads_no_store(tmp_path) -> None:
    job_id = str(uuid.uuid4())
    broken = p.PredictionStore(f"sqlite:///{tmp_path}")
    empty = JobSnapshot(job_id, [], {}, False, {})
    app = _app(tmp_path, broken, ScriptedGateway(job_id, [empty]))
    assert app.test_client().get(f"/workflows/execution/{job_id}").status_code == 404
