"""Job control under concurrency, on a real dagster-webserver and daemon.

Competing requests are fired from threads released at the same instant (a barrier),
20 jobs at a time, and the outcome is counted: runs that did work, provider calls,
materializations. Whatever the interleaving, a job has at most one run doing work,
a cancel wins, and no step is paid for twice.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections import Counter
from pathlib import Path

import dagster as dg
import pytest

from bridge_api import create_app
from runtime.stack import DagsterStack
from tests.conftest import SAMPLE_IMAGE
from wf_core import tags as t

pytestmark = pytest.mark.stack

TRIALS = 20
WORKFLOW = "img-edit-to-video"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("races")
    faults, calls = root / "faults.json", root / "calls.jsonl"
    faults.write_text("{}")
    stack_env = {
        "MEDIA_DIR": str(root / "media"),
        "LOCAL_PROVIDER_FAULTS": str(faults),
        "LOCAL_PROVIDER_CALL_LOG": str(calls),
        "MAX_CONCURRENT_RUNS": "8",
    }
    with DagsterStack(root / "home", env=stack_env) as stack:
        app = create_app(
            {
                "DAGSTER_GRAPHQL_URL": stack.graphql_url,
                "MEDIA_DIR": str(root / "media"),
                "UPLOAD_DIR": str(root / "uploads"),
                "AUTH_MODE": "disabled",
                "RATELIMIT_EXECUTE": "10000 per minute",
                "RATELIMIT_RETRY": "10000 per minute",
            }
        )
        yield {"app": app, "stack": stack, "faults": faults, "calls": calls}


def _client(env):
    return env["app"].test_client()


def _execute(env, options: dict | None = None) -> str:
    data = {"workflow_id": WORKFLOW, "file": (io.BytesIO(SAMPLE_IMAGE.read_bytes()), "a.jpg")}
    if options:
        data["options"] = json.dumps(options)
    response = _client(env).post(
        "/workflows/execute", data=data, content_type="multipart/form-data"
    )
    assert response.status_code == 202, response.json
    return response.json["job_id"]


def _status(env, job_id: str) -> str:
    return _client(env).get(f"/workflows/execution/{job_id}").json["status"]


def _wait_all(env, job_ids, wanted: set[str], timeout: float = 240) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        states = {job_id: _status(env, job_id) for job_id in job_ids}
        if all(s in wanted for s in states.values()):
            return states
        if time.monotonic() > deadline:
            raise AssertionError(f"not all {wanted}: {Counter(states.values())}")
        time.sleep(0.5)


def _settle(env, job_ids, timeout: float = 240) -> None:
    """Until no run of these jobs is queued or running."""
    instance = env["stack"].instance
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        active = [
            r
            for job_id in job_ids
            for r in instance.get_runs(dg.RunsFilter(tags={t.JOB_ID: job_id}))
            if not r.is_finished
        ]
        if not active:
            return
        time.sleep(0.5)
    raise AssertionError(f"{len(active)} runs still active")


def _at_once(*calls):
    """Run the calls in threads released together; their results in order."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def worker(i, call):
        barrier.wait()
        results[i] = call()

    threads = [threading.Thread(target=worker, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return results


def _call_log(env) -> list[dict]:
    path: Path = env["calls"]
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _calls(env) -> Counter:
    return Counter((c["job_id"], c["task"]) for c in _call_log(env))


def _started_after(env, job_id: str, moment: float) -> list[dict]:
    """Provider calls of the job that began after `moment` (wall clock, this machine)."""
    return [c for c in _call_log(env) if c["job_id"] == job_id and c["at"] > moment]


def _working_runs(env, job_id: str) -> list[dg.DagsterRun]:
    """The job's runs that did work: not withdrawn while queued, not stopped at their start."""
    runs = env["stack"].instance.get_runs(dg.RunsFilter(tags={t.JOB_ID: job_id}))
    return [r for r in runs if t.STOPPED not in r.tags and r.status != dg.DagsterRunStatus.CANCELED]


def _materializations(env, job_id: str, step: str) -> int:
    records = (
        env["stack"]
        .instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=dg.AssetKey([WORKFLOW, step]), asset_partitions=[job_id]
            ),
            limit=10,
        )
        .records
    )
    return len(records)


def _failed_jobs(env, fault: dict, wanted: str) -> list[str]:
    env["faults"].write_text(json.dumps({"image_edit": {**fault, "times": TRIALS}}))
    # The last model of the step's chain: no fallback the sensor would switch to at once.
    options = {"models": {"image_edit": "flux-kontext-pro"}}
    job_ids = [_execute(env, options) for _ in range(TRIALS)]
    _wait_all(env, job_ids, {wanted})
    env["faults"].write_text("{}")
    return job_ids


def test_concurrent_retries_launch_one_run(env) -> None:
    job_ids = _failed_jobs(env, {"error_type": "content_rejected"}, "failed")
    before = _calls(env)

    def retry(job_id):
        return lambda: _client(env).post(f"/workflows/retry/{job_id}")

    answers = {job_id: _at_once(retry(job_id), retry(job_id)) for job_id in job_ids}
    _wait_all(env, job_ids, {"completed"})
    _settle(env, job_ids)
    paid = _calls(env) - before
    for job_id, (first, second) in answers.items():
        codes = sorted([first.status_code, second.status_code])
        assert codes == [202, 409], (job_id, first.json, second.json)
        assert len(_working_runs(env, job_id)) == 2  # the failed run and one retry
        assert paid[(job_id, "image_edit")] == 1 and paid[(job_id, "image_to_video")] == 1
        for step in ("upload", "image_edit", "video_generation"):
            assert _materializations(env, job_id, step) == 1


def test_cancel_and_retry_at_once_cancel_wins(env) -> None:
    job_ids = _failed_jobs(env, {"error_type": "rate_limit", "retry_after": 600}, "pending_retry")
    env["faults"].write_text(json.dumps({"image_edit": {"delay": 2}}))
    before = _calls(env)

    def post(path):
        def call():
            response = _client(env).post(path)
            response.answered_at = time.time()
            return response

        return call

    answers = {
        job_id: _at_once(post(f"/workflows/cancel/{job_id}"), post(f"/workflows/retry/{job_id}"))
        for job_id in job_ids
    }
    _settle(env, job_ids)
    env["faults"].write_text("{}")
    paid = _calls(env) - before
    for job_id, (cancel, retry) in answers.items():
        assert cancel.status_code == 200, cancel.json
        assert retry.status_code in (202, 409), retry.json
        assert _status(env, job_id) == "cancelled"
        assert _started_after(env, job_id, cancel.answered_at) == []
        # Nothing after the cancelled step was ever paid for or produced.
        assert paid[(job_id, "image_to_video")] == 0
        assert _materializations(env, job_id, "video_generation") == 0


@pytest.mark.parametrize("delay", [0.0, 0.5, 2.0])
def test_early_cancel_stops_the_job(env, delay) -> None:
    """Cancel while queued, starting, in the image edit or in the video: nothing runs after."""
    env["faults"].write_text(
        json.dumps({"image_edit": {"delay": 1}, "image_to_video": {"delay": 6}})
    )
    job_ids = [_execute(env) for _ in range(TRIALS // 2)]
    time.sleep(delay)

    def cancel(job_id):
        def call():
            response = _client(env).post(f"/workflows/cancel/{job_id}")
            response.answered_at = time.time()
            return response

        return call

    answers = _at_once(*(cancel(job_id) for job_id in job_ids))
    _settle(env, job_ids)
    env["faults"].write_text("{}")
    cancelled = 0
    for job_id, answer in zip(job_ids, answers, strict=True):
        if answer.status_code == 409:  # a loaded machine may finish a job before its cancel
            assert answer.json["error"]["job_status"] == "completed", answer.json
            continue
        assert answer.status_code == 200, answer.json
        cancelled += 1
        assert _status(env, job_id) == "cancelled"
        # Nothing was started after the cancel answered; a step already under way when
        # it arrived is interrupted or, if it had just finished, kept.
        assert _started_after(env, job_id, answer.answered_at) == []
        video_calls = [c for c in _call_log(env) if c["job_id"] == job_id]
        if not any(c["task"] == "image_to_video" for c in video_calls):
            assert _materializations(env, job_id, "video_generation") == 0
    assert cancelled >= len(job_ids) // 2, "too few cancels met a running job"


class LosingProxy:
    """A loopback HTTP proxy to dagster-webserver that loses the answer to run launches.

    mode "late": the launch reaches Dagster, its answer comes after the client gave up;
    mode "drop": the launch never reaches Dagster and the connection hangs.
    """

    def __init__(self, upstream: str, mode: str, hold: float) -> None:
        import http.server

        import httpx

        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                launch = b"launchPipelineExecution" in body
                if launch and proxy.mode == "drop":
                    time.sleep(proxy.hold)
                    return
                answer = httpx.post(
                    upstream, content=body, headers={"Content-Type": "application/json"}
                )
                if launch:
                    time.sleep(proxy.hold)
                self.send_response(answer.status_code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def log_message(self, *args):
                pass

        self.mode, self.hold = mode, hold
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/graphql"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> LosingProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def _app_through(env, proxy: LosingProxy, uploads: Path):
    from bridge_api.dagster_client.gateway import DagsterGateway

    app = create_app(
        {
            "DAGSTER_GRAPHQL_URL": proxy.url,
            "MEDIA_DIR": env["app"].config["MEDIA_DIR"],
            "UPLOAD_DIR": str(uploads),
            "AUTH_MODE": "disabled",
        }
    )
    app.extensions["dagster"] = DagsterGateway(proxy.url, timeout=1.5)
    return app


def _post_execute(app):
    data = {"workflow_id": WORKFLOW, "file": (io.BytesIO(SAMPLE_IMAGE.read_bytes()), "a.jpg")}
    return app.test_client().post(
        "/workflows/execute", data=data, content_type="multipart/form-data"
    )


def test_a_launch_whose_answer_is_lost_is_still_reported(env, tmp_path) -> None:
    with LosingProxy(env["stack"].graphql_url, "late", hold=4) as proxy:
        app = _app_through(env, proxy, tmp_path)
        response = _post_execute(app)
    assert response.status_code == 202, response.json
    job_id = response.json["job_id"]
    runs = env["stack"].instance.get_runs(dg.RunsFilter(tags={t.JOB_ID: job_id}))
    assert [r.run_id for r in runs] == [response.json["execution_id"]]
    assert _wait_all(env, [job_id], {"completed"})[job_id] == "completed"


def test_a_launch_that_never_arrived_is_undone_with_a_clean_503(env, tmp_path) -> None:
    partitions_before = set(env["stack"].instance.get_dynamic_partitions("jobs"))
    with LosingProxy(env["stack"].graphql_url, "drop", hold=4) as proxy:
        app = _app_through(env, proxy, tmp_path)
        response = _post_execute(app)
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    text = json.dumps(response.json)
    for leak in ("mutation", "wf/", "dagster/", str(tmp_path), "/graphql", "Traceback"):
        assert leak not in text, text
    assert list(tmp_path.rglob("*.*")) == []  # the upload is gone
    assert set(env["stack"].instance.get_dynamic_partitions("jobs")) == partitions_before
