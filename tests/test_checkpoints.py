"""The checkpoint store writes whole JSON files, locally or on any fsspec URL."""

from __future__ import annotations

import json
import os

import dagster as dg
import pytest

from resources.json_files import write_json_atomic
from wf_assets.checkpoints import CheckpointIOManager

KEY = dg.AssetKey(["img-edit-to-video", "image_edit"])


def test_round_trip_on_a_local_folder(tmp_path) -> None:
    store = CheckpointIOManager(base_url=str(tmp_path))
    path = store.path_for(KEY, "job-1")
    write_json_atomic(path, {"output": {"a": 1}})
    assert store.read(KEY, "job-1") == {"output": {"a": 1}}
    assert (tmp_path / "img-edit-to-video" / "image_edit" / "job-1.json").is_file()
    # No temporary file is left beside it.
    assert os.listdir(tmp_path / "img-edit-to-video" / "image_edit") == ["job-1.json"]


def test_round_trip_on_an_fsspec_url() -> None:
    store = CheckpointIOManager(base_url="memory://checkpoints")
    write_json_atomic(store.path_for(KEY, "job-2"), {"output": {"b": 2}})
    assert store.read(KEY, "job-2") == {"output": {"b": 2}}
    assert store.read(KEY, "missing") is None


def test_a_failed_write_keeps_the_old_file(tmp_path) -> None:
    store = CheckpointIOManager(base_url=str(tmp_path))
    path = store.path_for(KEY, "job-3")
    write_json_atomic(path, {"v": 1})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"v": object()})
    assert json.loads(path.read_text()) == {"v": 1}


@pytest.mark.parametrize("bad", ["", "../x", "a/b", ".hidden"])
def test_partition_keys_cannot_escape(tmp_path, bad: str) -> None:
    with pytest.raises(ValueError):
        CheckpointIOManager(base_url=str(tmp_path)).path_for(KEY, bad)
