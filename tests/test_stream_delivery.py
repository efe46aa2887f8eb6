"""The SSE stream delivers every event exactly once, whatever order Dagster shows them in.

A scripted gateway stands in for Dagster's GraphQL: the job's snapshot (runs and
checkpoints) lags its run logs by one poll, as it does on a loaded machine, so a
checkpoint becomes visible after a later progress line was already sent.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
import psycopg2
import pytest
from werkzeug.serving import make_server

from bridge_api import create_app
from bridge_api.dagster_client.snapshots import JobSnapshot
from tests.conftest import PG_SERVER_URL, SAMPLE_IMAGE
from wf_core import tags as t
from wf_core.checkpoint import Checkpoint
from wf_core.job_ids import new_job_id
from wf_core.job_state import RunView

WORKFLOW = "img-edit-to-video"
BASE_MS = 1_790_000_000_000  # log timestamps are epoch milliseconds
OPS = {
    "upload": "img_edit_to_video__upload",
    "image_edit": "img_edit_to_video__image_edit",
    "video_generation": "img_edit_to_video__video_generation",
}


def _start(step: str, ms: int) -> dict:
    return {"__typename": "ExecutionStepStartEvent", "message": "", "stepKey": OPS[step],
            "timestamp": str(BASE_MS + ms)}  # fmt: skip


def _line(step: str, ms: int, percent: int) -> dict:
    return {"__typename": "LogMessageEvent", "message": f"progress {percent}% working",
            "stepKey": OPS[step], "timestamp": str(BASE_MS + ms)}  # fmt: skip


def _checkpoint(step: str, ms: int) -> Checkpoint:
    done = datetime.fromtimestamp((BASE_MS + ms) / 1000, UTC).isoformat()
    index = list(OPS).index(step)
    return Checkpoint(WORKFLOW, "job", step, index, "image", step, {"url": f"/media/{step}"},
                      "run-1", done, done)  # fmt: skip


@dataclass
class Poll:
    """What Dagster shows at one poll: the run's status, its log so far, its checkpoints."""

    status: str
    logs: list[dict]
    checkpoints: dict[str, Checkpoint] = field(default_factory=dict)


class LaggingGateway:
    """Replays a script of polls; each `snapshot` call moves to the next poll."""

    def __init__(self, job_id: str, polls: list[Poll]) -> None:
        self.job_id, self.polls, self.index = job_id, polls, -1
        self.run_id = "run-1"

    @property
    def poll(self) -> Poll:
        return self.polls[min(max(self.index, 0), len(self.polls) - 1)]

    def snapshot(self, job_id, specs) -> JobSnapshot:
        self.index += 1
        tags = t.job_tags(WORKFLOW, job_id, "local-dev", "bridge")
        run = RunView(self.run_id, self.poll.status, tags, 1.0)
        times = {self.run_id: {"start": 1.0, "end": None, "updated": 9.0}}
        return JobSnapshot(job_id, [run], dict(self.poll.checkpoints), False, times, {})

    def progress(self, run_id, after):
        start = int(after or 0)
        logs = self.poll.logs
        return logs[start:], str(len(logs))


def _script() -> list[Poll]:
    """A three-step job whose checkpoints each show one poll after later log lines."""
    logs = [
        _start("upload", 1000),
        _start("image_edit", 3000),  # upload's checkpoint (2000) is not visible yet
        _line("image_edit", 3500, 40),
        _start("video_generation", 6000),  # image_edit's checkpoint (5000) lags too
        _line("video_generation", 7000, 50),
    ]
    upload, edit, video = (
        _checkpoint("upload", 2000),
        _checkpoint("image_edit", 5000),
        _checkpoint("video_generation", 8000),
    )
    return [
        Poll("STARTED", logs[:2]),  # read by the route's ownership check
        Poll("STARTED", logs[:2]),
        Poll("STARTED", logs[:4], {"upload": upload}),
        Poll("STARTED", logs[:5], {"upload": upload, "image_edit": edit}),
        Poll("SUCCESS", logs, {"upload": upload, "image_edit": edit, "video_generation": video}),
    ]


@pytest.fixture
def app(tmp_path):
    app = create_app(
        {
            "AUTH_MODE": "disabled",
            "MEDIA_DIR": str(tmp_path),
            "UPLOAD_DIR": str(tmp_path / "uploads"),
            "STREAM_POLL_SECONDS": 0.0,
            "STREAM_ACTIVE_POLL_SECONDS": 0.0,
        }
    )
    return app


def _events(app, gateway, last_event_id: str | None = None) -> list[dict]:
    app.extensions["dagster"] = gateway
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    body = app.test_client().get(f"/jobs/{gateway.job_id}/stream", headers=headers).get_data(True)
    events = []
    for block in body.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in fields:
            events.append({"id": fields["id"], "event": fields["event"],
                           "data": json.loads(fields["data"])})  # fmt: skip
    return events


def _identity(event: dict) -> str:
    return json.dumps([event["event"], event["data"]], sort_keys=True)


def test_a_checkpoint_that_shows_late_is_still_sent(app) -> None:
    events = _events(app, LaggingGateway(new_job_id(), _script()))
    checkpoints = [e["data"]["step_name"] for e in events if e["event"] == "checkpoint"]
    assert sorted(checkpoints) == ["image_edit", "upload", "video_generation"]
    progress = [e for e in events if e["event"] == "progress"]
    assert len(progress) == 5  # three step starts, two progress lines
    assert events[-1]["event"] == "complete"
    # Exactly once each, and ids never repeat.
    assert max(Counter(_identity(e) for e in events).values()) == 1
    assert len({e["id"] for e in events}) == len(events)


def test_reconnect_receives_exactly_what_was_missed(app) -> None:
    job_id = new_job_id()
    events = _events(app, LaggingGateway(job_id, _script()))
    for cut in range(len(events)):
        # The job has finished by the time the client comes back.
        finished = LaggingGateway(job_id, [_script()[-1]])
        replay = _events(app, finished, events[cut]["id"])
        missed = events[cut + 1 :]
        assert Counter(map(_identity, replay)) == Counter(map(_identity, missed)), cut
        if missed:
            assert replay[-1]["id"] == events[-1]["id"]


def test_reconnect_while_the_job_still_runs(app) -> None:
    """Cut after the second event, come back while the snapshot still lags its logs."""
    job_id = new_job_id()
    full = _events(app, LaggingGateway(job_id, _script()))
    first = _events(app, LaggingGateway(job_id, _script()[:2] + [_script()[-1]]))
    cut = first[1]
    rest = _events(app, LaggingGateway(job_id, _script()[1:]), cut["id"])
    assert Counter(map(_identity, first[:2] + rest)) == Counter(map(_identity, full))


def test_a_foreign_last_event_id_replays_everything(app) -> None:
    job_id = new_job_id()
    full = _events(app, LaggingGateway(job_id, _script()))
    again = _events(app, LaggingGateway(job_id, _script()), "1700000000000-1-0-0")
    assert Counter(map(_identity, again)) == Counter(map(_identity, full))


class GatedGateway(LaggingGateway):
    """The script, polled by the job's feed only once `watchers` watchers have joined it;
    counts the feed's polls."""

    def __init__(self, job_id: str, polls: list[Poll], hub, watchers: int) -> None:
        super().__init__(job_id, polls)
        self.hub, self.watchers = hub, watchers
        self.feed_polls = 0
        self.lock = threading.Lock()

    def snapshot(self, job_id, specs) -> JobSnapshot:
        if threading.current_thread().name.startswith("feed-"):
            deadline = time.monotonic() + 30
            while self._joined() < self.watchers and time.monotonic() < deadline:
                time.sleep(0.01)
            self.feed_polls += 1
        with self.lock:
            return super().snapshot(job_id, specs)

    def _joined(self) -> int:
        feed = self.hub.feeds.get(self.job_id)
        return feed.watchers if feed else 0


def _read_stream(port: int, job_id: str) -> list[dict]:
    events = []
    with httpx.stream("GET", f"http://127.0.0.1:{port}/jobs/{job_id}/stream", timeout=30) as r:
        assert r.status_code == 200
        fields: dict[str, str] = {}
        for line in r.iter_lines():
            if not line:
                if "event" in fields:
                    events.append({"id": fields["id"], "event": fields["event"],
                                   "data": json.loads(fields["data"])})  # fmt: skip
                fields = {}
            elif ": " in line and not line.startswith(":"):
                key, value = line.split(": ", 1)
                fields[key] = value
    return events


def test_two_watchers_of_a_job_share_one_feed_and_get_the_same_sequence(app) -> None:
    """Two clients on one job, over real HTTP: one poller for both, identical events."""
    hub = app.extensions["streams"]
    gateway = GatedGateway(new_job_id(), _script(), hub, watchers=2)
    app.extensions["dagster"] = gateway
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with ThreadPoolExecutor(2) as pool:
            first, second = pool.map(
                lambda _: _read_stream(server.server_port, gateway.job_id), range(2)
            )
    finally:
        server.shutdown()
    assert first == second
    assert first[-1]["event"] == "complete"
    # One feed polled the script for both: never more polls than the script has
    # (two watchers each polling would have read it twice).
    assert gateway.feed_polls <= len(_script())
    assert hub.stats() == {"streams": 0, "feeds": 0}


class EndlessGateway(LaggingGateway):
    """A job that stays running; Dagster answers health checks and takes new jobs."""

    def __init__(self, job_id: str) -> None:
        super().__init__(job_id, [Poll("STARTED", [_start("upload", 1000)])])
        self.launched: list[dict] = []

    def reachable(self) -> bool:
        return True

    def add_partition(self, job_id: str) -> None:
        pass

    def launch(self, job_name: str, run_config: dict, tags: dict) -> str:
        self.launched.append(tags)
        return f"run-{len(self.launched) + 1}"


def test_the_cap_refuses_streams_only_and_a_gone_watcher_is_freed(tmp_path) -> None:
    """At the cap a stream is refused with 503 while health and execute answer; a client
    that goes away frees its slot at its next heartbeat."""
    app = create_app({"AUTH_MODE": "disabled", "MEDIA_DIR": str(tmp_path),
                      "UPLOAD_DIR": str(tmp_path / "uploads"), "MAX_STREAMS": 1,
                      "STREAM_HEARTBEAT_SECONDS": 0.2, "STREAM_POLL_SECONDS": 0.05})  # fmt: skip
    gateway = EndlessGateway(new_job_id())
    app.extensions["dagster"] = gateway
    hub = app.extensions["streams"]
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/jobs/{gateway.job_id}/stream"
    try:
        with httpx.stream("GET", url, timeout=30) as held:
            assert held.status_code == 200
            lines = held.iter_lines()  # kept: a dropped iterator closes the connection
            assert next(lines) == "retry: 2000"
            # The cap is one stream: a second one is refused, with when to come back.
            refused = httpx.get(url, timeout=30)
            assert refused.status_code == 503
            assert refused.json()["error"]["code"] == "too_many_streams"
            assert int(refused.headers["Retry-After"]) > 0
            assert hub.stats()["streams"] == 1
            # Everything else still answers.
            base = f"http://127.0.0.1:{server.server_port}"
            assert httpx.get(f"{base}/healthz", timeout=30).status_code == 200
            with SAMPLE_IMAGE.open("rb") as photo:
                executed = httpx.post(f"{base}/workflows/execute", data={"workflow_id": WORKFLOW},
                                      files={"file": ("p.jpg", photo)}, timeout=30)  # fmt: skip
            assert executed.status_code == 202 and len(gateway.launched) == 1
        # The client went away without a word: its slot and the job's feed are freed.
        deadline = time.monotonic() + 30
        while hub.stats() != {"streams": 0, "feeds": 0} and time.monotonic() < deadline:
            time.sleep(0.05)
        assert hub.stats() == {"streams": 0, "feeds": 0}
        with httpx.stream("GET", url, timeout=30) as again:
            assert again.status_code == 200
    finally:
        server.shutdown()


def test_dagsters_run_event_notifications_wake_the_feed(tmp_path) -> None:
    """With PostgreSQL storage a feed reads Dagster when a run of its job stores an event
    (dagster-postgres' `NOTIFY run_events`), not on a timer."""
    app = create_app({"AUTH_MODE": "disabled", "MEDIA_DIR": str(tmp_path),
                      "UPLOAD_DIR": str(tmp_path / "uploads"), "DAGSTER_PG_URL": PG_SERVER_URL,
                      # Timers far beyond the test: only a notification makes a poll.
                      "STREAM_POLL_SECONDS": 600.0, "STREAM_ACTIVE_POLL_SECONDS": 600.0,
                      "STREAM_NOTIFIED_POLL_SECONDS": 600.0})  # fmt: skip
    gateway = EndlessGateway(new_job_id())
    app.extensions["dagster"] = gateway
    hub = app.extensions["streams"]
    spec = app.extensions["specs"].get(WORKFLOW)
    feed, _ = hub.join(spec, gateway.job_id)
    try:
        _until(lambda: hub.notified() and feed.polls == 1 and "run-1" in hub.by_run)
        conn = psycopg2.connect(PG_SERVER_URL)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("NOTIFY run_events, 'run-1_42'")
        _until(lambda: feed.polls == 2)
        with conn.cursor() as cur:
            cur.execute("NOTIFY run_events, 'run-1_43'")
        _until(lambda: feed.polls == 3)
        conn.close()
    finally:
        hub.unsubscribe(feed)
        hub.listener.stop()
    assert hub.stats() == {"streams": 0, "feeds": 0} and not hub.by_run


def _until(condition, limit: float = 30.0) -> None:
    """Wait for `condition` (a bound on a hang, not a timing check)."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.02)
