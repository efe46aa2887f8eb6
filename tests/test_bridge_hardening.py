"""The bridge's HTTP edges: headers, paths, media files, form limits and what /healthz shows."""

from __future__ import annotations

import io
import json
import socket
from pathlib import Path

import pytest

from bridge_api import create_app
from bridge_api.app import config_from_env
from tests.conftest import SAMPLE_IMAGE
from tests.test_uploads import image_bytes

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


@pytest.mark.parametrize(
    "path",
    ["//workflows/list", "/workflows//list", "//healthz", "/media//x.png", "///openapi.json"],
)
def test_an_empty_path_segment_is_a_json_404_not_a_redirect(app, path: str) -> None:
    response = _get(app, path)
    assert response.status_code == 404, path
    assert response.json["error"]["code"] == "not_found"
    assert "Location" not in response.headers


def test_media_refuses_symlinks_that_leave_media_dir(app, tmp_path: Path) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("secret: dagster config")
    jobs = tmp_path / "media" / "jobs" / "j"
    jobs.mkdir(parents=True)
    (jobs / "a.png").write_bytes(image_bytes("PNG"))
    (jobs / "file-link.yaml").symlink_to(home / "dagster.yaml")
    (tmp_path / "media" / "home").symlink_to(home, target_is_directory=True)
    (jobs / "inside-link.png").symlink_to(jobs / "a.png")
    for path in ("/media/jobs/j/file-link.yaml", "/media/home/dagster.yaml"):
        response = _get(app, path)
        assert response.status_code == 404, path
        assert response.json["error"]["code"] == "not_found"
        assert b"secret" not in response.data
    assert _get(app, "/media/jobs/j/inside-link.png").status_code == 200
    assert _get(app, "/media/jobs/j/a.png").data == image_bytes("PNG")


def test_uploads_default_to_a_folder_outside_media(tmp_path: Path) -> None:
    env = {"MEDIA_DIR": str(tmp_path / "media"), "DAGSTER_HOME": str(tmp_path / "home")}
    upload_dir = Path(config_from_env(env)["UPLOAD_DIR"])
    assert upload_dir == tmp_path / "home" / "uploads"
    assert not upload_dir.is_relative_to(tmp_path / "media")


@pytest.mark.parametrize("upload_dir", ["incoming", "up"], ids=["legacy-default", "configured"])
def test_raw_uploads_are_never_served(tmp_path: Path, upload_dir: str) -> None:
    media = tmp_path / "media"
    app = create_app(
        {"MEDIA_DIR": str(media), "UPLOAD_DIR": str(media / "up"), "AUTH_MODE": "disabled"}
    )
    raw = media / upload_dir / "0190aaaa-0000-7000-8000-000000000000" / "input.png"
    raw.parent.mkdir(parents=True)
    raw.write_bytes(image_bytes("PNG"))
    response = _get(app, f"/media/{raw.relative_to(media)}")
    assert response.status_code == 404
    assert response.json["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    "method,path",
    [
        ("get", "/workflows/list"),
        ("get", "/healthz"),
        ("get", "/nowhere"),
        ("delete", "/workflows/list"),
        ("post", "/workflows/execute"),
    ],
)
def test_every_response_says_nosniff(app, method: str, path: str) -> None:
    response = getattr(app.test_client(), method)(path)
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_a_huge_options_field_is_form_too_large_not_file_too_large(app) -> None:
    options = json.dumps({"prompts": {"image_edit": "x" * 1_000_000}})
    response = _execute(app, workflow_id=WORKFLOW, options=options, file=_sample())
    assert response.status_code == 413
    assert response.json["error"]["code"] == "form_too_large"
    assert "field" in response.json["error"]["message"]


def test_a_form_of_thousands_of_parts_is_form_too_large(app) -> None:
    response = _execute(app, workflow_id=WORKFLOW, pad=["x"] * 5000, file=_sample())
    assert response.status_code == 413
    assert response.json["error"]["code"] == "form_too_large"
    assert "parts" in response.json["error"]["message"]


def test_a_too_large_body_is_still_file_too_large(tmp_path: Path) -> None:
    app = create_app({"MEDIA_DIR": str(tmp_path), "AUTH_MODE": "disabled", "MAX_UPLOAD_MB": 1})
    big = (io.BytesIO(b"\xff\xd8\xff" + b"\0" * (3 * 1024 * 1024)), "big.jpg")
    response = _execute(app, workflow_id=WORKFLOW, file=big)
    assert response.status_code == 413
    assert response.json["error"]["code"] == "file_too_large"


def test_an_over_long_prompt_is_422_naming_the_field(app) -> None:
    options = json.dumps({"prompts": {"image_edit": "x" * 4001}})
    response = _execute(app, workflow_id=WORKFLOW, options=options, file=_sample())
    assert response.status_code == 422
    assert response.json["error"]["code"] == "invalid_options"
    assert response.json["error"]["field"] == "options.prompts.image_edit"
    assert "at most 4,000" in response.json["error"]["message"]


def test_healthz_does_not_show_the_orchestrators_address(app) -> None:
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.json["orchestrator"] == {"reachable": False}
    assert app.config["DAGSTER_GRAPHQL_URL"].encode() not in response.data
    assert b"127.0.0.1" not in response.data


@pytest.mark.parametrize("value", [0, -5])
def test_a_non_positive_upload_limit_refuses_to_start(value) -> None:
    with pytest.raises(ValueError, match="MAX_UPLOAD_MB"):
        create_app({"MAX_UPLOAD_MB": value, "AUTH_MODE": "disabled"})
