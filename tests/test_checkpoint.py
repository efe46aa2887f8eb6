"""A step's checkpoint as a type: its stored dict form is exactly what the factory has
always written, so stored checkpoints, materialization metadata and the API keep theirs."""

from __future__ import annotations

import json

import dagster as dg
import pytest

from wf_assets.factory import checkpoint_metadata, completed_checkpoint
from wf_assets.kinds import STEP_KINDS
from wf_core.checkpoint import Checkpoint

# A checkpoint file as the factory wrote it before the type existed (its keys in its
# order): what every stored checkpoint and `checkpoint` metadata entry looks like.
STORED = (
    '{"workflow_id": "img-edit-to-video", "job_id": "0195f3a2-7c1e-7b1a-9f00-000000000001", '
    '"step_name": "image_edit", "step_index": 1, "step_type": "generation", '
    '"kind": "image_edit", "output": {"image_url": "/media/a.png", "model_used": "nano-banana"}, '
    '"run_id": "4b1c2d3e-0000-4000-8000-000000000000", '
    '"started_at": "2026-01-02T03:04:05.006+00:00", '
    '"completed_at": "2026-01-02T03:04:09.123+00:00"}'
)
STARTED = "2026-01-02T03:04:05.006+00:00"


def test_a_stored_checkpoint_loads_and_dumps_back_to_the_same_text() -> None:
    raw = json.loads(STORED)
    checkpoint = Checkpoint.from_dict(raw)
    assert checkpoint.step_name == "image_edit"
    assert checkpoint.step_index == 1
    assert checkpoint.output == {"image_url": "/media/a.png", "model_used": "nano-banana"}
    assert checkpoint.completed_at == "2026-01-02T03:04:09.123+00:00"
    assert json.dumps(checkpoint.to_dict()) == STORED  # same keys, values and key order


def test_a_dict_missing_a_key_is_not_a_checkpoint() -> None:
    raw = json.loads(STORED)
    del raw["completed_at"]
    with pytest.raises(ValueError, match="completed_at"):
        Checkpoint.from_dict(raw)


def test_the_factory_builds_the_dict_it_always_wrote(specs) -> None:
    spec = specs["img-edit-to-video"]
    step = spec.step("image_edit")
    url_field = STEP_KINDS["image_edit"].url_field
    output = {url_field: "/media/a.png", "model_used": "nano-banana"}
    checkpoint = completed_checkpoint(
        spec, step, "image_edit", "job-1", "run-1", output, STARTED, clock=lambda: 1767323049.1239
    )
    # The dict the factory built inline before, key by key, in its order.
    before = {
        "workflow_id": spec.id,
        "job_id": "job-1",
        "step_name": step.name,
        "step_index": 1,
        "step_type": step.type,
        "kind": "image_edit",
        "output": output,
        "run_id": "run-1",
        "started_at": STARTED,
        "completed_at": "2026-01-02T03:04:09.123+00:00",
    }
    assert json.dumps(checkpoint.to_dict()) == json.dumps(before)
    metadata = checkpoint_metadata(checkpoint, url_field)
    assert metadata == {
        "checkpoint": dg.MetadataValue.json(before),
        "started_at": STARTED,
        "completed_at": "2026-01-02T03:04:09.123+00:00",
        "media_url": dg.MetadataValue.url("/media/a.png"),
        "model_used": "nano-banana",
    }


def test_metadata_leaves_out_a_missing_url_and_model(specs) -> None:
    spec = specs["img-edit-to-video"]
    checkpoint = completed_checkpoint(
        spec, spec.step("upload"), "input_upload", "job-1", "run-1", {}, STARTED, clock=lambda: 0.0
    )
    assert set(checkpoint_metadata(checkpoint, "image_url")) == {
        "checkpoint",
        "started_at",
        "completed_at",
    }
