"""The bridge's HTTP edges: headers, paths, media files, form limits and what /healthz shows."""

from __future__ import annotations

import io
import socket
from pathlib import Path

import pytest

from bridge_api import create_app
from tests.conftest import SAMPLE_IMAGE

WORKFLOW = "img-edit-to-video"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def app(tmp_path: Path):
    """The bridge with auth off and an orchestrator that does not answer."""
    return create_app(
        {
            "DAGSTER_GRAPHQL_URL": f"http://127.0.0.1:{_closed_port()}/graphql",
            "MEDIA_DIR": str(tmp_path / "media"),
            "UPLOAD_DIR": str(tmp_path / "uploads"),
            "AUTH_MODE": "disabled",
            "RATELIMIT_EXECUTE": "2 per minute",
        }
    )


def _get(app, path: str):
    """GET exactly `path`: the test client would read a leading `//` as a host name."""
    return app.test_client().get("/", environ_overrides={"PATH_INFO": path})


def _execute(app, **fields):
    return app.test_client().post(
        "/workflows/execute", data=fields, content_type="multipart/form-data"
    )


def _sample() -> tuple[io.BytesIO, str]:
    return io.BytesIO(SAMPLE_IMAGE.read_bytes()), "photo.jpg"


def test_a_503_keeps_its_own_retry_after(app) -> None:
    response = _execute(app, workflow_id=WORKFLOW, file=_sample())
    assert response.status_code == 503
    assert response.json["error"]["code"] == "orchestrator_unavailable"
    assert response.headers.getlist("Retry-After") == ["5"]


def test_a_429_says_when_its_window_resets(app) -> None:
    codes = [_execute(app).status_code for _ in range(2)]
    assert codes == [400, 400]  # a refused request still counts
    limited = _execute(app)
    assert limited.status_code == 429
    assert limited.json["error"]["code"] == "rate_limited"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
