"""The bridge's spec catalog: what the orchestrator can run, and bad files named, not fatal."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from bridge_api import create_app
from bridge_api.stores.catalog import SpecCatalog
from tests.fakes.clock import FakeClock
from wf_core.settings import REPO_ROOT


def _specs(tmp_path: Path) -> Path:
    shutil.copytree(REPO_ROOT / "workflow_specs", tmp_path, dirs_exist_ok=True)
    raw = yaml.safe_load((tmp_path / "img-edit-to-video.yaml").read_text())
    raw["id"], raw["name"] = "new-one", "New One"
    (tmp_path / "new-one.yaml").write_text(yaml.safe_dump(raw))
    return tmp_path


def test_a_file_is_runnable_once_the_orchestrator_has_loaded_its_job(tmp_path: Path) -> None:
    loaded = {"img_edit_to_video", "style_transfer_video"}
    asked: list[float] = []
    clock = FakeClock()

    def jobs() -> set[str]:
        asked.append(clock())
        return set(loaded)

    catalog = SpecCatalog(_specs(tmp_path), loaded_jobs=jobs, clock=clock)
    assert set(catalog.all()) == {"img-edit-to-video", "style-transfer-video", "new-one"}
    assert set(catalog.runnable()) == {"img-edit-to-video", "style-transfer-video"}
    loaded.add("new_one")  # the code server reloaded
    assert "new-one" not in catalog.runnable()  # the last answer, for a moment
    assert "new-one" in catalog.runnable(fresh=True)  # what execute asks before refusing
    assert len(asked) == 2


def test_the_last_known_jobs_serve_while_the_orchestrator_is_down(tmp_path: Path) -> None:
    clock, up = FakeClock(), [True]

    def jobs() -> set[str]:
        if not up[0]:
            raise ConnectionError("down")
        return {"img_edit_to_video"}

    catalog = SpecCatalog(_specs(tmp_path), loaded_jobs=jobs, clock=clock)
    assert set(catalog.runnable()) == {"img-edit-to-video"}
    up[0] = False
    clock.advance(5)
    assert set(catalog.runnable()) == {"img-edit-to-video"}


def test_a_broken_file_beside_valid_ones_leaves_the_list_whole(tmp_path: Path) -> None:
    specs = _specs(tmp_path / "specs")
    (specs / "broken.yaml").write_text("id: broken\nsteps: [")
    state = f"sqlite:///{tmp_path / 'state.db'}"
    app = create_app({"SPECS_DIR": str(specs), "AUTH_MODE": "disabled", "STATE_DB_URL": state})
    client = app.test_client()
    response = client.get("/workflows/list")
    assert response.status_code == 200
    ids = {w["id"] for w in response.get_json()["workflows"]}
    assert ids == {"img-edit-to-video", "style-transfer-video", "new-one"}
    errors = app.extensions["specs"].errors()
    assert [(Path(e.path).name, e.field) for e in errors] == [("broken.yaml", "<file>")]
    assert "wf_spec_files_invalid 1.0" in client.get("/metrics").get_data(as_text=True)
