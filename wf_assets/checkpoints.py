"""The checkpoint store: each step's output as one JSON file per asset and partition."""

from __future__ import annotations

import json
from typing import Any

import dagster as dg
from pydantic import Field
from upath import UPath

from resources.json_files import write_json_atomic
from wf_core.checkpoint import Checkpoint


class CheckpointIOManager(dg.ConfigurableIOManager):
    """Writes `<base_url>/<workflow>/<step>/<job_id>.json`, atomically, and reads it back.

    `base_url` is a folder or any fsspec URL (`s3://bucket/prefix`). A checkpoint that is
    not there (written on another host, whose disk this worker cannot see) is read back
    from the step's materialization in the event log, which every worker reaches: run
    workers on several hosts need no shared folder.
    """

    base_url: str = Field(description="Folder or fsspec URL that holds the checkpoints.")

    def path_for(self, asset_key: dg.AssetKey, partition_key: str) -> UPath:
        """Where the checkpoint of one asset partition lives."""
        if not partition_key or "/" in partition_key or partition_key.startswith("."):
            raise ValueError(f"invalid job id {partition_key!r}")
        return UPath(self.base_url).joinpath(*asset_key.path, f"{partition_key}.json")

    def handle_output(self, context: dg.OutputContext, obj: dict[str, Any]) -> None:
        """Persist one step's checkpoint."""
        write_json_atomic(self.path_for(context.asset_key, context.partition_key), obj)

    def load_input(self, context: dg.InputContext) -> dict[str, Any]:
        """Load an upstream step's checkpoint for the same job."""
        path = self.path_for(context.asset_key, context.asset_partition_key)
        if not path.exists():
            recorded = _recorded_json(
                context.instance, context.asset_key, context.asset_partition_key
            )
            if recorded is not None:
                return recorded
            raise dg.Failure(
                f"no checkpoint for {context.asset_key.to_user_string()} "
                f"job {context.asset_partition_key}: run that step first",
                metadata={"error_type": "internal", "retryable": False},
            )
        return json.loads(path.read_text(encoding="utf-8"))

    def read(self, asset_key: dg.AssetKey, partition_key: str) -> dict[str, Any] | None:
        """The checkpoint of one asset partition, or None."""
        path = self.path_for(asset_key, partition_key)
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def recorded_checkpoint(
    instance: dg.DagsterInstance, asset_key: dg.AssetKey, partition_key: str
) -> Checkpoint | None:
    """The checkpoint carried by the latest materialization of one asset partition, or None."""
    recorded = _recorded_json(instance, asset_key, partition_key)
    return None if recorded is None else Checkpoint.from_dict(recorded)


def _recorded_json(
    instance: dg.DagsterInstance, asset_key: dg.AssetKey, partition_key: str
) -> dict[str, Any] | None:
    """The `checkpoint` JSON metadata of the latest materialization, as stored, or None."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=[partition_key]), limit=1
    ).records
    materialization = records[0].asset_materialization if records else None
    value = materialization.metadata.get("checkpoint") if materialization else None
    return value.value if isinstance(value, dg.JsonMetadataValue) else None  # type: ignore[return-value]
