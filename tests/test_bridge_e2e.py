"""The bridge end to end: real dagster-webserver and daemon, Supabase-style tokens, SSE."""

from __future__ import annotations

import io
import json
import time

import pytest

from bridge_api import create_app
from runtime.stack import DagsterStack
from tests.conftest import SAMPLE_IMAGE
from tests.fakes.supabase_auth import FakeSupabaseAuth
from tests.test_uploads import image_bytes, png_declaring
from wf_core.job_ids import JOBS_PARTITIONS_NAME

pytestmark = pytest.mark.stack

OTHER_USER = "0b6f4f8e-1111-4222-8333-944455556666"
SAMPLE_PNG = image_bytes("PNG", (64, 48))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("bridge")
    faults = root / "faults.json"
    faults.write_text("{}")
    stack_env = {
        "MEDIA_DIR": str(root / "media"),
        "LOCAL_PROVIDER_FAULTS": str(faults),
        "RETRY_BACKOFF_BASE": "0.5",
        "RETRY_BACKOFF_CAP": "1",
    }
    with FakeSupabaseAuth() as auth, DagsterStack(root / "home", env=stack_env) as stack:
        app = create_app(
            {
                "DAGSTER_GRAPHQL_URL": stack.graphql_url,
                "MEDIA_DIR": str(root / "media"),
                "UPLOAD_DIR": str(root / "uploads"),
                "AUTH_MODE": "supabase",
                "SUPABASE_URL": auth.url,
                "SUPABASE_JWT_SECRET": auth.jwt_secret,
                "STREAM_POLL_SECONDS": 0.2,
                "STREAM_HEARTBEAT_SECONDS": 1.0,
                "RATELIMIT_EXECUTE": "1000 per minute",
            }
        )
        yield {
            "app": app,
            "client": app.test_client(),
            "auth": auth,
            "stack": stack,
            "faults": faults,
            "root": root,
        }


def _headers(env, sub=None) -> dict:
    token = env["auth"].token(**({"sub": sub} if sub else {}))
    return {"Authorization": f"Bearer {token}"}


def _execute(env, options=None, sub=None):
    data = {
        "workflow_id": "img-edit-to-video",
        "file": (io.BytesIO(SAMPLE_IMAGE.read_bytes()), "photo.jpg"),
    }
    if options is not None:
        data["options"] = json.dumps(options)
    return env["client"].post(
        "/workflows/execute",
        data=data,
        headers=_headers(env, sub),
        content_type="multipart/form-data",
    )


def _stream(env, job_id: str, last_event_id: str | None = None, timeout: float = 90):
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    token = env["auth"].token()
    response = env["client"].get(
        f"/jobs/{job_id}/stream?access_token={token}", headers=headers, buffered=False
    )
    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    events, started = [], time.time()
    buffer = ""
    for chunk in response.response:
        buffer += chunk.decode() if isinstance(chunk, bytes) else chunk
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            fields = dict(
                line.split(": ", 1)
                for line in block.splitlines()
                if ": " in line and not line.startswith(":")
            )
            if "event" in fields:
                events.append(
                    {
                        "id": fields["id"],
                        "event": fields["event"],
                        "data": json.loads(fields["data"]),
                    }
                )
            elif block.startswith(":"):
                events.append({"event": "heartbeat"})
        assert time.time() - started < timeout, "stream did not end"
    response.close()
    return events


def _wait_status(env, job_id, wanted, timeout=90):
    deadline = time.time() + timeout
    while time.time() < deadline:
        body = env["client"].get(f"/workflows/execution/{job_id}", headers=_headers(env)).json
        if body["status"] in wanted:
            return body
        time.sleep(0.3)
    raise AssertionError(f"job never reached {wanted}: {body}")


def test_execute_stream_and_execution_document(env) -> None:
    env["faults"].write_text("{}")
    response = _execute(env, {"prompts": {"image_edit": "make it teal"}})
    assert response.status_code == 202, response.json
    body = response.json
    assert set(body) == {"job_id", "execution_id", "status", "stream_url", "spec_version"}
    assert body["status"] == "running" and body["stream_url"] == f"/jobs/{body['job_id']}/stream"
    events = _stream(env, body["job_id"])
    kinds = [e["event"] for e in events if e["event"] != "heartbeat"]
    assert kinds[-1] == "complete" and kinds.count("checkpoint") == 3
    assert "progress" in kinds
    progress = next(e for e in events if e["event"] == "progress")
    assert set(progress["data"]) == {"step", "step_name", "progress", "message"}
    complete = events[-1]["data"]
    assert complete["result"]["video_url"].endswith("/video_generation.mp4")

    doc = env["client"].get(f"/workflows/execution/{body['job_id']}", headers=_headers(env)).json
    assert set(doc) >= {
        "id",
        "job_id",
        "workflow_id",
        "status",
        "current_step",
        "total_steps",
        "checkpoints",
        "error_info",
        "result",
        "can_retry",
        "retry_count",
        "created_at",
        "updated_at",
    }
    assert doc["id"] == body["execution_id"] and doc["status"] == "completed"
    assert doc["total_steps"] == 3 and doc["error_info"] is None and doc["can_retry"] is False
    upload, edit, video = (doc["checkpoints"][str(i)] for i in range(3))
    assert upload["step_type"] == "input" and set(upload["output"]) >= {
        "image_url",
        "public_id",
        "format",
    }
    assert edit["output"]["prompt"] == "make it teal"
    assert edit["output"]["model_used"] == "nano-banana"
    for checkpoint in (upload, edit, video):
        assert checkpoint["status"] == "completed"
        assert checkpoint["started_at"] <= checkpoint["completed_at"]
    assert doc["result"] == video["output"]
    # The media is served by the bridge.
    media = env["client"].get(video["output"]["video_url"])
    assert media.status_code == 200 and media.data[4:8] == b"ftyp"

    # A reconnect replays only what was missed after the given event.
    middle = events[len(events) // 2]
    replay = [
        e for e in _stream(env, body["job_id"], middle.get("id")) if e["event"] != "heartbeat"
    ]
    later = [e for e in events[events.index(middle) + 1 :] if e["event"] != "heartbeat"]
    assert sorted(json.dumps([e["event"], e["data"]]) for e in replay) == sorted(
        json.dumps([e["event"], e["data"]]) for e in later
    )
    assert replay[-1]["id"] == later[-1]["id"]


def test_retryable_failure_shows_pending_retry_then_completes(env) -> None:
    env["faults"].write_text(
        json.dumps({"image_to_video": {"error_type": "rate_limit", "retry_after": 4, "times": 1}})
    )
    response = _execute(env, {"models": {"video_generation": "kling/v1.6"}})
    job_id = response.json["job_id"]
    doc = _wait_status(env, job_id, {"pending_retry"})
    assert doc["error_info"]["error_type"] == "rate_limit"
    assert doc["error_info"]["retryable"] is True and doc["error_info"]["next_retry_at"]
    assert doc["checkpoints"]["2"]["status"] == "failed_retryable"
    assert doc["checkpoints"]["1"]["status"] == "completed" and doc["can_retry"] is True
    events = _stream(env, job_id)
    error = next(e for e in events if e["event"] == "error")
    assert error["data"]["retryable"] is True and error["data"]["error_type"] == "rate_limit"
    assert events[-1]["event"] == "complete"
    done = _wait_status(env, job_id, {"completed"})
    assert done["retry_count"] == 1


def test_manual_retry_of_a_failed_job_resumes_at_the_failed_step(env) -> None:
    env["faults"].write_text(
        json.dumps({"image_to_video": {"error_type": "content_rejected", "times": 1}})
    )
    job_id = _execute(env).json["job_id"]
    doc = _wait_status(env, job_id, {"failed"})
    assert doc["error_info"]["retryable"] is False and doc["can_retry"] is True
    assert doc["checkpoints"]["2"]["status"] == "failed"
    retry = env["client"].post(f"/workflows/retry/{job_id}", headers=_headers(env))
    assert retry.status_code == 202, retry.json
    assert retry.json["message"] == "Workflow retry started"
    assert retry.json["resume_from_step"] == 2
    done = _wait_status(env, job_id, {"completed"})
    assert done["id"] == retry.json["execution_id"]
    again = env["client"].post(f"/workflows/retry/{job_id}", headers=_headers(env))
    assert again.status_code == 409 and again.json["error"]["code"] == "invalid_state"
    stack = env["stack"]
    edits = stack.instance.fetch_materializations(
        __import__("dagster").AssetRecordsFilter(
            asset_key=__import__("dagster").AssetKey(["img-edit-to-video", "image_edit"]),
            asset_partitions=[job_id],
        ),
        limit=5,
    ).records
    assert len(edits) == 1


def test_cancel_a_running_job(env) -> None:
    env["faults"].write_text(json.dumps({"image_to_video": {"delay": 60, "times": 1}}))
    job_id = _execute(env).json["job_id"]
    _wait_status(env, job_id, {"running"})
    deadline = time.time() + 30
    while time.time() < deadline:
        doc = env["client"].get(f"/workflows/execution/{job_id}", headers=_headers(env)).json
        if doc["checkpoints"]["1"]["status"] == "completed":
            break
        time.sleep(0.2)
    response = env["client"].post(f"/workflows/cancel/{job_id}", headers=_headers(env))
    assert response.status_code == 200 and response.json["status"] == "cancelled"
    doc = _wait_status(env, job_id, {"cancelled"})
    assert doc["can_retry"] is False
    assert (
        env["client"].post(f"/workflows/retry/{job_id}", headers=_headers(env)).status_code == 409
    )
    assert (
        env["client"].post(f"/workflows/cancel/{job_id}", headers=_headers(env)).status_code == 409
    )
    events = _stream(env, job_id)
    assert events[-1]["event"] == "error" and events[-1]["data"]["error_type"] == "cancelled"


def test_another_users_job_is_404_like_a_missing_one(env) -> None:
    env["faults"].write_text("{}")
    job_id = _execute(env).json["job_id"]
    for path in (f"/workflows/execution/{job_id}", f"/workflows/execution/{job_id[:-1]}0"):
        response = env["client"].get(path, headers=_headers(env, OTHER_USER))
        assert response.status_code == 404
        assert response.json == {
            "error": {"code": "job_not_found", "message": response.json["error"]["message"]}
        }
    for verb in ("retry", "cancel"):
        response = env["client"].post(
            f"/workflows/{verb}/{job_id}", headers=_headers(env, OTHER_USER)
        )
        assert response.status_code == 404


def test_jobs_list_is_the_callers_newest_first(env) -> None:
    env["faults"].write_text("{}")
    mine = [_execute(env).json["job_id"] for _ in range(3)]
    _execute(env, sub=OTHER_USER)
    first = env["client"].get("/workflows/jobs?limit=2", headers=_headers(env)).json
    assert [j["job_id"] for j in first["jobs"]] == mine[::-1][:2]
    assert first["next_cursor"]
    second = (
        env["client"]
        .get(f"/workflows/jobs?limit=2&cursor={first['next_cursor']}", headers=_headers(env))
        .json
    )
    assert second["jobs"][0]["job_id"] == mine[0]
    assert "checkpoints" not in second["jobs"][0]


UPLOAD_MATRIX = {
    "empty": (b"", "a.png", 400),
    "truncated-png": (SAMPLE_PNG[:80], "a.png", 400),
    "bomb": (png_declaring(20000, 20000), "bomb.png", 413),
    "exe-as-jpg": (b"MZ\x90\x00" + b"\x00" * 200, "photo.jpg", 415),
    "over-limit": (b"\xff\xd8\xff" + b"\x00" * (2 * 1024 * 1024), "big.jpg", 413),
    "hostile-name": (SAMPLE_PNG, "../../x", 400),
}


@pytest.mark.parametrize("case", sorted(UPLOAD_MATRIX))
def test_rejected_upload_leaves_nothing_behind(env, case) -> None:
    data, name, status = UPLOAD_MATRIX[case]
    stack, root = env["stack"], env["root"]
    partitions = set(stack.instance.get_dynamic_partitions(JOBS_PARTITIONS_NAME))
    runs = len(stack.instance.get_runs())
    incoming = root / "uploads"
    files = set(incoming.rglob("*")) if incoming.exists() else set()
    bad = {"workflow_id": "img-edit-to-video", "file": (io.BytesIO(data), name)}
    env["app"].config["MAX_UPLOAD_BYTES"] = 1024 * 1024
    try:
        response = env["client"].post(
            "/workflows/execute",
            data=bad,
            headers=_headers(env),
            content_type="multipart/form-data",
        )
    finally:
        env["app"].config["MAX_UPLOAD_BYTES"] = 50 * 1024 * 1024
    assert response.status_code == status, response.json
    assert response.json["error"]["message"]
    assert set(stack.instance.get_dynamic_partitions(JOBS_PARTITIONS_NAME)) == partitions
    assert len(stack.instance.get_runs()) == runs
    # No new upload (an earlier job's upload step may swap its own for a receipt meanwhile).
    after = set(incoming.rglob("input.*")) if incoming.exists() else set()
    assert after - files == set()


def test_healthz_reports_the_orchestrator(env) -> None:
    body = env["client"].get("/healthz").json
    assert body["status"] == "ok" and body["orchestrator"]["reachable"] is True
