"""The registry of step kinds: a spec may name only the kinds listed here."""

from __future__ import annotations

from wf_assets.kinds.base import STEP_URL_FIELDS, StepContext, StepKind, Upstream
from wf_assets.kinds.generate import make_generation_run
from wf_assets.kinds.upload import run_upload

_GENERATION = frozenset({"generation", "transform"})


def _generation(name: str, url_field: str, resource_type: str, message: str) -> StepKind:
    run = make_generation_run(name, url_field, resource_type, message)
    return StepKind(name=name, run=run, step_types=_GENERATION, url_field=url_field)


STEP_KINDS: dict[str, StepKind] = {
    "input_upload": StepKind(
        name="input_upload",
        run=run_upload,
        step_types=frozenset({"input"}),
        url_field="image_url",
        needs_model=False,
    ),
    "image_edit": _generation(
        "image_edit", "edited_image_url", "image", "Generating edited image..."
    ),
    "image_style": _generation("image_style", "styled_image_url", "image", "Applying style..."),
    "image_upscale": _generation("image_upscale", "upscaled_image_url", "image", "Upscaling..."),
    "image_to_video": _generation("image_to_video", "video_url", "video", "Generating video..."),
}
STEP_URL_FIELDS.update({name: kind.url_field for name, kind in STEP_KINDS.items()})

__all__ = ["STEP_KINDS", "StepContext", "StepKind", "Upstream"]
