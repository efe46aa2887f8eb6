"""Spec files: the shipped ones load; each kind of bad spec names its file and field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from wf_core.settings import REPO_ROOT
from wf_core.specs import (
    SpecError,
    WorkflowSpec,
    continuation_problem,
    load_spec,
    load_specs,
    load_specs_strict,
    read_spec_dir,
    spec_digest,
    spec_from_snapshot,
)

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


def test_a_bad_file_is_reported_and_the_others_still_load(tmp_path: Path) -> None:
    (tmp_path / "img-edit-to-video.yaml").write_text(yaml.safe_dump(BASE))
    broken = {**BASE, "id": "broken", "credits_cost": -1}
    (tmp_path / "broken.yaml").write_text(yaml.safe_dump(broken))
    (tmp_path / "garbage.yaml").write_text("steps: [unclosed")
    found = read_spec_dir(tmp_path)
    assert set(found.specs) == {"img-edit-to-video"}
    assert sorted((Path(e.path).name, e.field) for e in found.errors) == [
        ("broken.yaml", "credits_cost"),
        ("garbage.yaml", "<file>"),
    ]
    with pytest.raises(SpecError, match="broken.yaml: credits_cost"):
        load_specs_strict(tmp_path)


def test_a_spec_version_is_a_digest_of_its_content() -> None:
    spec = WorkflowSpec.model_validate(BASE)
    same = WorkflowSpec.model_validate(yaml.safe_load(yaml.safe_dump(BASE)))
    edited = WorkflowSpec.model_validate({**BASE, "credits_cost": 51})
    assert spec_digest(spec) == spec_digest(same)
    assert spec_digest(spec) != spec_digest(edited)
    assert spec_from_snapshot(spec.model_dump(mode="json")) == spec


def _edited(**step_changes) -> WorkflowSpec:
    raw = yaml.safe_load(yaml.safe_dump(BASE))
    raw["steps"][2].update(step_changes)
    return WorkflowSpec.model_validate(raw)


def test_continuation_problem_names_what_the_code_can_no_longer_run() -> None:
    pinned = WorkflowSpec.model_validate(BASE)
    steps = ["video_generation"]
    # A model or prompt change: the old job goes on, on its own version.
    other_default = _edited(default_model="kling/v1.6", fallback_models=[])
    assert continuation_problem(pinned, other_default, steps) is None
    assert continuation_problem(pinned, None, steps) == (
        "workflow 'img-edit-to-video' is no longer defined"
    )
    renamed = yaml.safe_load(yaml.safe_dump(BASE))
    renamed["steps"][2]["name"] = "video"
    renamed["default_prompts"]["video"] = renamed["default_prompts"].pop("video_generation")
    renamed["supported_models"]["video"] = renamed["supported_models"].pop("video_generation")
    problem = continuation_problem(pinned, WorkflowSpec.model_validate(renamed), steps)
    assert problem == "step 'video_generation' of workflow 'img-edit-to-video' no longer exists"
    reshaped = _edited(inputs=["upload"])
    assert "changed shape" in (continuation_problem(pinned, reshaped, steps) or "")
    gone = yaml.safe_load(yaml.safe_dump(BASE))
    gone["steps"][2]["default_model"] = "retired/model"
    gone["supported_models"]["video_generation"].append("retired/model")
    old = WorkflowSpec.model_validate(gone)  # a version pinned when the model existed
    assert continuation_problem(old, pinned, steps) == (
        "model 'retired/model' of step 'video_generation' is no longer available"
    )
