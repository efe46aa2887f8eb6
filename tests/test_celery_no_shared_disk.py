"""No shared disk: uploads kept in the database, checkpoints read back from the event log."""

from __future__ import annotations

from typing import Any

import dagster as dg
import pytest

from tests.conftest import migrated
from tests.fakes.sample_media import png_bytes
from wf_assets.checkpoints import CheckpointIOManager
from wf_assets.kinds.upload import read_source
from wf_core.errors import HardError
from wf_store.state_db import engine_for
from wf_store.uploads import UploadStore, is_upload_source, uploads_in_db

JOBS = dg.StaticPartitionsDefinition(["job-1"])


@dg.asset(partitions_def=JOBS, io_manager_key="checkpoints")
def first() -> dg.Output[dict[str, Any]]:
    checkpoint = {"output": {"image_url": "https://media.example/first.png"}}
    return dg.Output(checkpoint, metadata={"checkpoint": dg.MetadataValue.json(checkpoint)})


@dg.asset(partitions_def=JOBS, io_manager_key="checkpoints")
def second(first: dict[str, Any]) -> dict[str, Any]:
    return {"output": {"from": first["output"]["image_url"]}}


def test_a_checkpoint_written_on_another_host_is_read_from_the_event_log(tmp_path) -> None:
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        host_a = CheckpointIOManager(base_url=str(tmp_path / "host-a"))
        host_b = CheckpointIOManager(base_url=str(tmp_path / "host-b"))
        assert dg.materialize(
            [first], instance=instance, partition_key="job-1", resources={"checkpoints": host_a}
        ).success
        # Host B's folder is empty: it has never seen host A's file.
        result = dg.materialize(
            [first, second],
            selection=[second],
            instance=instance,
            partition_key="job-1",
            resources={"checkpoints": host_b},
        )
        assert result.success
        assert host_b.read(second.key, "job-1") == {
            "output": {"from": "https://media.example/first.png"}
        }
        assert not host_b.path_for(first.key, "job-1").exists()


def test_a_checkpoint_nobody_recorded_still_fails_clearly(tmp_path) -> None:
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        result = dg.materialize(
            [first, second],
            selection=[second],
            instance=instance,
            partition_key="job-1",
            resources={"checkpoints": CheckpointIOManager(base_url=str(tmp_path / "b"))},
            raise_on_error=False,
        )
        assert not result.success


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, False),
        ({"RUN_LAUNCHER": "celery"}, True),
        ({"RUN_LAUNCHER": "celery", "UPLOAD_STORE": "disk"}, False),
        ({"UPLOAD_STORE": "db"}, True),
    ],
)
def test_uploads_go_to_the_database_with_the_celery_profile(env, expected) -> None:
    assert uploads_in_db(env) is expected


def test_an_upload_in_the_database_is_read_by_any_worker(tmp_path, monkeypatch) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    monkeypatch.setenv("WF_STATE_DB_URL", url)
    data = png_bytes()
    store = UploadStore(engine_for(migrated(url)))
    source = store.put("0190aaaa-bbbb-7ccc-8ddd-eeeeffff0000", data, "png")
    assert is_upload_source(source)
    assert read_source(source) == data
    store.delete("0190aaaa-bbbb-7ccc-8ddd-eeeeffff0000")
    with pytest.raises(HardError, match="not found"):
        read_source(source)
    store.close()
