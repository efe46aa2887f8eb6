"""The bridge lists workflows from the spec folder: a new file appears with no code change."""

from __future__ import annotations

import shutil

import yaml

from bridge_api import create_app
from wf_core.settings import REPO_ROOT


def test_list_has_api_md_fields() -> None:
    client = create_app({"AUTH_MODE": "disabled"}).test_client()
    body = client.get("/workflows/list").get_json()
    seed = next(w for w in body["workflows"] if w["id"] == "img-edit-to-video")
    assert seed["steps"][0] == {"name": "upload", "description": "Upload your input image"}
    assert seed["supported_models"]["image_edit"] == ["nano-banana", "flux-kontext-pro"]
    assert set(seed) >= {
        "id",
        "name",
        "description",
        "icon",
        "category",
        "preview_video",
        "preview_thumbnail",
        "enabled",
        "default_prompts",
        "supported_models",
        "steps",
        "estimated_duration_seconds",
        "credits_cost",
    }


def test_new_spec_file_appears_and_disabled_is_hidden(tmp_path) -> None:
    shutil.copytree(REPO_ROOT / "workflow_specs", tmp_path, dirs_exist_ok=True)
    raw = yaml.safe_load((tmp_path / "img-edit-to-video.yaml").read_text())
    raw["id"], raw["name"] = "quick-edit", "Quick Edit"
    (tmp_path / "quick-edit.yaml").write_text(yaml.safe_dump(raw))
    off = yaml.safe_load((tmp_path / "style-transfer-video.yaml").read_text())
    off["enabled"] = False
    (tmp_path / "style-transfer-video.yaml").write_text(yaml.safe_dump(off))
    client = create_app({"SPECS_DIR": str(tmp_path), "AUTH_MODE": "disabled"}).test_client()
    ids = [w["id"] for w in client.get("/workflows/list").get_json()["workflows"]]
    assert ids == ["img-edit-to-video", "quick-edit"]


def test_unknown_route_is_json() -> None:
    response = create_app({"AUTH_MODE": "disabled"}).test_client().get("/nope")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"
