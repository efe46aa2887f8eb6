"""Bridge requests refused before Dagster is involved, and Dagster being unreachable."""

from __future__ import annotations

import io
import json
import socket

import pytest
from PIL import Image

from bridge_api import create_app
from tests.conftest import SAMPLE_IMAGE
from tests.fakes.supabase_auth import LEGACY_SECRET, FakeSupabaseAuth
from tests.test_uploads import png_declaring

JOB = "01a0c450-6c00-7000-8000-000000000000"  # a fixed UUIDv7: the same ids in every test process
PROTECTED = [
    ("post", "/workflows/execute"),
    ("get", f"/workflows/execution/{JOB}"),
    ("post", f"/workflows/retry/{JOB}"),
    ("post", f"/workflows/cancel/{JOB}"),
    ("get", "/workflows/jobs"),
    ("get", f"/jobs/{JOB}/stream"),
]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def app(tmp_path):
    return create_app(
        {
            "DAGSTER_GRAPHQL_URL": f"http://127.0.0.1:{_closed_port()}/graphql",
            "MEDIA_DIR": str(tmp_path / "media"),
            "UPLOAD_DIR": str(tmp_path / "uploads"),
            "AUTH_MODE": "supabase",
            "SUPABASE_JWT_SECRET": LEGACY_SECRET,
            "MAX_UPLOAD_MB": 1,
            "RATELIMIT_EXECUTE": "3 per minute",
        }
    )


@pytest.fixture
def auth():
    return FakeSupabaseAuth()


def _bearer(auth) -> dict:
    return {"Authorization": f"Bearer {auth.legacy_token()}"}


@pytest.mark.parametrize("method,path", PROTECTED)
def test_protected_routes_need_a_token(app, method, path) -> None:
    response = getattr(app.test_client(), method)(path)
    assert response.status_code == 401
    assert response.json["error"]["code"] == "missing_token"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("path", ["/workflows/list", "/openapi.json"])
def test_public_routes(app, path) -> None:
    assert app.test_client().get(path).status_code == 200


def _png(size=(64, 48)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, "teal").save(out, "PNG")
    return out.getvalue()


def _post(app, auth, fields: dict):
    return app.test_client().post(
        "/workflows/execute", data=fields, headers=_bearer(auth), content_type="multipart/form-data"
    )


BOMB = png_declaring(20000, 20000)


@pytest.mark.parametrize(
    "fields,status,code",
    [
        ({"file": (io.BytesIO(_png()), "a.png")}, 400, "missing_field"),
        ({"workflow_id": "nope", "file": (io.BytesIO(_png()), "a.png")}, 404, "workflow_not_found"),
        ({"workflow_id": "img-edit-to-video"}, 400, "missing_file"),
        (
            {
                "workflow_id": "img-edit-to-video",
                "options": "{not json",
                "file": (io.BytesIO(_png()), "a.png"),
            },
            400,
            "invalid_json",
        ),
        (
            {
                "workflow_id": "img-edit-to-video",
                "options": json.dumps({"models": {"x": "y"}}),
                "file": (io.BytesIO(_png()), "a.png"),
            },
            422,
            "invalid_options",
        ),
        (
            {
                "workflow_id": "img-edit-to-video",
                "options": json.dumps({"models": {"image_edit": "kling/v1.6"}}),
                "file": (io.BytesIO(_png()), "a.png"),
            },
            422,
            "invalid_options",
        ),
        (
            {"workflow_id": "img-edit-to-video", "file": (io.BytesIO(b""), "a.png")},
            400,
            "empty_file",
        ),
        (
            {"workflow_id": "img-edit-to-video", "file": (io.BytesIO(_png()[:60]), "a.png")},
            400,
            "invalid_image",
        ),
        (
            {"workflow_id": "img-edit-to-video", "file": (io.BytesIO(BOMB), "bomb.png")},
            413,
            "image_too_large",
        ),
        (
            {
                "workflow_id": "img-edit-to-video",
                "file": (io.BytesIO(b"MZ\x90\x00" + b"\0" * 100), "x.jpg"),
            },
            415,
            "unsupported_type",
        ),
        (
            {
                "workflow_id": "img-edit-to-video",
                "file": (io.BytesIO(b"\xff\xd8\xff" + b"\0" * (3 * 1024 * 1024)), "big.jpg"),
            },
            413,
            "file_too_large",
        ),
        (
            {"workflow_id": "img-edit-to-video", "file": (io.BytesIO(_png()), "../../x")},
            400,
            "invalid_filename",
        ),
    ],
    ids=[
        "no-workflow",
        "unknown-workflow",
        "no-file",
        "bad-json",
        "unknown-step",
        "unsupported-model",
        "empty",
        "truncated-png",
        "bomb",
        "exe-as-jpg",
        "over-limit",
        "hostile-name",
    ],
)
def test_bad_execute_requests_leave_nothing(app, auth, tmp_path, fields, status, code) -> None:
    response = _post(app, auth, fields)
    assert response.status_code == status, response.json
    assert response.json["error"]["code"] == code
    assert response.json["error"]["message"]
    assert not (tmp_path / "uploads").exists() or not any((tmp_path / "uploads").iterdir())


def test_unreachable_orchestrator_is_503_and_leaves_no_file(app, auth, tmp_path) -> None:
    fields = {
        "workflow_id": "img-edit-to-video",
        "file": (io.BytesIO(SAMPLE_IMAGE.read_bytes()), "photo.jpg"),
    }
    response = _post(app, auth, fields)
    assert response.status_code == 503
    assert response.json["error"]["code"] == "orchestrator_unavailable"
    assert response.headers["Retry-After"]
    assert not any((tmp_path / "uploads").iterdir())
    execution = app.test_client().get(f"/workflows/execution/{JOB}", headers=_bearer(auth))
    assert execution.status_code == 503
    health = app.test_client().get("/healthz")
    assert health.status_code == 503 and health.json["orchestrator"]["reachable"] is False


def test_execute_is_rate_limited_per_user(app, auth) -> None:
    fields = lambda: {"workflow_id": "nope", "file": (io.BytesIO(_png()), "a.png")}  # noqa: E731
    codes = [_post(app, auth, fields()).status_code for _ in range(4)]
    assert codes == [404, 404, 404, 429]
    limited = _post(app, auth, fields())
    assert limited.json["error"]["code"] == "rate_limited"
    assert int(limited.headers["Retry-After"]) > 0
    other = {"Authorization": f"Bearer {auth.legacy_token(sub='another-user')}"}
    response = app.test_client().post(
        "/workflows/execute", data=fields(), headers=other, content_type="multipart/form-data"
    )
    assert response.status_code == 404


def test_media_is_served_and_cannot_escape(app, tmp_path) -> None:
    media = tmp_path / "media" / "jobs" / "j"
    media.mkdir(parents=True)
    (media / "a.png").write_bytes(_png())
    (tmp_path / "secret.txt").write_text("secret")
    client = app.test_client()
    assert client.get("/media/jobs/j/a.png").status_code == 200
    for path in ("/media/../secret.txt", "/media/..%2fsecret.txt", "/media/%2e%2e/secret.txt"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert b"secret" not in response.data


def test_malformed_job_id_is_404(app, auth) -> None:
    response = app.test_client().get("/workflows/execution/..%2f..%2fetc", headers=_bearer(auth))
    assert response.status_code == 404


def _redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.mark.skipif(not _redis_up(), reason="no Redis on 127.0.0.1:6379")
def test_limits_are_shared_through_redis(tmp_path, auth) -> None:
    """Two bridge processes share one Redis: the second sees the first one's count."""
    import subprocess
    import sys
    import uuid

    prefix = f"bridge-test-{uuid.uuid4().hex[:8]}"
    uri = "redis://127.0.0.1:6379/0"
    config = {
        "DAGSTER_GRAPHQL_URL": f"http://127.0.0.1:{_closed_port()}/graphql",
        "MEDIA_DIR": str(tmp_path),
        "AUTH_MODE": "supabase",
        "SUPABASE_JWT_SECRET": LEGACY_SECRET,
        "RATELIMIT_EXECUTE": "2 per minute",
        "RATELIMIT_STORAGE_URI": uri,
        "RATELIMIT_KEY_PREFIX": prefix,
    }
    token = auth.legacy_token()
    script = (
        "import io, json, sys\n"
        "from bridge_api import create_app\n"
        "app = create_app(json.loads(sys.argv[1]))\n"
        "r = app.test_client().post('/workflows/execute', data={'workflow_id': 'nope'},"
        " headers={'Authorization': 'Bearer ' + sys.argv[2]})\n"
        "print(r.status_code)\n"
    )
    codes = []
    for _ in range(3):  # three separate processes, one request each
        out = subprocess.run(
            [sys.executable, "-c", script, json.dumps(config), token],
            capture_output=True,
            text=True,
            timeout=60,
        )
        codes.append(int(out.stdout.strip().splitlines()[-1]))
    assert codes == [404, 404, 429]
