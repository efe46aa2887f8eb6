"""The step kinds' functions, keyed by the names of the core's step-kind table."""

from __future__ import annotations

from wf_assets.kinds.base import StepContext, StepKind, Upstream
from wf_assets.kinds.generate import make_generation_run
from wf_assets.kinds.upload import run_upload
from wf_core.step_kinds import STEP_KIND_TABLE, StepKindInfo


def _generation(info: StepKindInfo) -> StepKind:
    run = make_generation_run(info.name, info.url_field, info.media, info.message)
    return StepKind(info, run)


STEP_KINDS: dict[str, StepKind] = {
    name: StepKind(info, run_upload) if name == "input_upload" else _generation(info)
    for name, info in STEP_KIND_TABLE.items()
}

__all__ = ["STEP_KINDS", "StepContext", "StepKind", "Upstream"]
