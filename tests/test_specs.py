"""Spec files: the shipped ones load; each kind of bad spec names its file and field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from wf_core.settings import REPO_ROOT
from wf_core.specs import SpecError, load_spec, load_specs

SHIPPED = sorted((REPO_ROOT / "workflow_specs").glob("*.yaml"))
BASE = yaml.safe_load((REPO_ROOT / "workflow_specs" / "img-edit-to-video.yaml").read_text())


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_spec_loads(path: Path) -> None:
    spec = load_spec(path)
    assert spec.id == path.stem
    assert spec.steps[0].type == "input"
    for step in spec.steps:
        if step.type == "generation":
            assert spec.default_prompts[step.name]


def test_both_seed_workflows_are_shipped() -> None:
    assert {"img-edit-to-video", "style-transfer-video"} <= set(load_specs())


def test_seed_workflow_matches_the_seed() -> None:
    spec = load_specs()["img-edit-to-video"]
    assert [s.name for s in spec.steps] == ["upload", "image_edit", "video_generation"]
    assert spec.supported_models == {
        "image_edit": ["nano-banana", "flux-kontext-pro"],
        "video_generation": ["minimax/video-01", "kling/v1.6"],
    }
    assert spec.credits_cost == 50 and spec.estimated_duration_seconds == 180


def _mutate(change) -> dict:
    raw = yaml.safe_load(yaml.safe_dump(BASE))
    change(raw)
    return raw


def _set(path: str, value):
    def change(raw):
        target = raw
        keys = path.split(".")
        for key in keys[:-1]:
            target = target[int(key)] if key.isdigit() else target[key]
        last = keys[-1]
        target[int(last) if last.isdigit() else last] = value

    return change


def _cycle(raw):
    raw["steps"][1]["inputs"] = ["video_generation"]
    raw["steps"][2]["inputs"] = ["image_edit"]


BAD = {
    "unknown_kind": (_set("steps.1.kind", "image_frobnicate"), "steps[1].kind"),
    "unknown_model": (
        _set("supported_models.image_edit", ["nano-banana", "gpt-99"]),
        "supported_models.image_edit[1]",
    ),
    "model_wrong_kind": (
        _set("supported_models.image_edit", ["nano-banana", "kling/v1.6"]),
        "supported_models.image_edit[1]",
    ),
    "duplicate_step": (_set("steps.2.name", "image_edit"), "steps[2].name"),
    "unknown_input_step": (_set("steps.2.inputs", ["nowhere"]), "steps[2].inputs[0]"),
    "unknown_step_in_models": (
        _set("supported_models.ghost", ["nano-banana"]),
        "supported_models.ghost",
    ),
    "cycle": (_cycle, "steps"),
    "default_model_not_supported": (
        _set("steps.1.default_model", "flux-kontext-pro-x"),
        "steps[1].default_model",
    ),
    "missing_prompt": (
        _set("default_prompts", {"image_edit": "edit it"}),
        "default_prompts.video_generation",
    ),
    "extra_field": (_set("colour", "blue"), "colour"),
    "extra_step_field": (_set("steps.0.retries", 3), "steps[0].retries"),
    "bad_type": (_set("steps.1.type", "magic"), "steps[1].type"),
    "fallback_not_supported": (
        _set("steps.1.fallback_models", ["kling/v1.6"]),
        "steps[1].fallback_models[0]",
    ),
    "missing_field": (lambda raw: raw.pop("credits_cost"), "credits_cost"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_spec_names_file_and_field(case: str, tmp_path: Path) -> None:
    change, field = BAD[case]
    path = tmp_path / "img-edit-to-video.yaml"
    path.write_text(yaml.safe_dump(_mutate(change)))
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert caught.value.field == field
    assert str(path) in str(caught.value) and field in str(caught.value)


def test_id_must_match_file_name(tmp_path: Path) -> None:
    path = tmp_path / "other-name.yaml"
    path.write_text(yaml.safe_dump(BASE))
    with pytest.raises(SpecError, match="other-name.yaml: id:"):
        load_spec(path)


@pytest.mark.parametrize("text", ["", "- a list\n", "key: [unclosed\n"])
def test_not_a_mapping_is_refused(text: str, tmp_path: Path) -> None:
    path = tmp_path / "img-edit-to-video.yaml"
    path.write_text(text)
    with pytest.raises(SpecError, match="img-edit-to-video.yaml: <file>"):
        load_spec(path)


def test_dag_with_parallel_branches(tmp_path: Path) -> None:
    raw = _mutate(lambda r: None)
    raw["steps"].append(
        {
            "name": "alt_video",
            "type": "generation",
            "kind": "image_to_video",
            "description": "second branch",
            "default_model": "kling/v1.6",
            "inputs": ["image_edit"],
        }
    )
    raw["steps"][2]["inputs"] = ["image_edit"]
    raw["supported_models"]["alt_video"] = ["kling/v1.6"]
    raw["default_prompts"]["alt_video"] = "spin"
    path = tmp_path / "img-edit-to-video.yaml"
    path.write_text(yaml.safe_dump(raw))
    spec = load_spec(path)
    assert spec.downstream_of({"image_edit"}) == {"image_edit", "video_generation", "alt_video"}
