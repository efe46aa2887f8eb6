"""Per-job options are checked against the spec before anything runs."""

from __future__ import annotations

import pytest

from wf_core.run_config import OptionsError, build_run_config


def test_options_become_op_config(specs) -> None:
    spec = specs["img-edit-to-video"]
    config = build_run_config(
        spec,
        {"models": {"video_generation": "kling/v1.6"}, "prompts": {"image_edit": "x"}},
        "/in.jpg",
    )
    assert config == {
        "ops": {
            "img_edit_to_video__upload": {"config": {"source": "/in.jpg"}},
            "img_edit_to_video__image_edit": {"config": {"prompt": "x"}},
            "img_edit_to_video__video_generation": {"config": {"model": "kling/v1.6"}},
        }
    }


def test_only_selected_steps_get_config(specs) -> None:
    config = build_run_config(specs["img-edit-to-video"], None, "/in.jpg", {"video_generation"})
    assert list(config["ops"]) == ["img_edit_to_video__video_generation"]


@pytest.mark.parametrize(
    "options,field",
    [
        ([], "options"),
        ({"colour": {}}, "options.colour"),
        ({"models": {"nowhere": "nano-banana"}}, "options.models.nowhere"),
        ({"models": {"image_edit": "kling/v1.6"}}, "options.models.image_edit"),
        ({"models": {"image_edit": "gpt-99"}}, "options.models.image_edit"),
        ({"prompts": {"image_edit": ""}}, "options.prompts.image_edit"),
        ({"prompts": {"image_edit": 5}}, "options.prompts.image_edit"),
        ({"prompts": "edit"}, "options.prompts"),
    ],
)
def test_bad_options_name_the_field(specs, options, field) -> None:
    with pytest.raises(OptionsError) as caught:
        build_run_config(specs["img-edit-to-video"], options, "/in.jpg")
    assert caught.value.field == field
