"""The step-kind table, as data: what a spec may name and what each kind produces.

The functions that run each kind live in `wf_assets.kinds`, keyed by the same names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MediaKind = Literal["image", "video"]


@dataclass(frozen=True)
class StepKindInfo:
    """A registered step kind: the step types it may serve and the output it makes."""

    name: str
    step_types: frozenset[str]
    url_field: str
    media: MediaKind
    needs_model: bool = True
    message: str = ""


_GENERATION = frozenset({"generation", "transform"})


def _generation(name: str, url_field: str, media: MediaKind, message: str) -> StepKindInfo:
    return StepKindInfo(name, _GENERATION, url_field, media, needs_model=True, message=message)


STEP_KIND_TABLE: dict[str, StepKindInfo] = {
    "input_upload": StepKindInfo(
        "input_upload", frozenset({"input"}), "image_url", "image", needs_model=False
    ),
    "image_edit": _generation(
        "image_edit", "edited_image_url", "image", "Generating edited image..."
    ),
    "image_style": _generation("image_style", "styled_image_url", "image", "Applying style..."),
    "image_upscale": _generation("image_upscale", "upscaled_image_url", "image", "Upscaling..."),
    "image_to_video": _generation("image_to_video", "video_url", "video", "Generating video..."),
}
