"""A step's checkpoint: what one completed step stored for its job.

Its dict form (`to_dict`) is what is stored: the checkpoint file, the `checkpoint` JSON
metadata of the step's materialization (which the bridge reads over GraphQL) and the
input handed to downstream steps. That form has been the same ten keys since the first
checkpoint was written, so every stored checkpoint loads with `from_dict`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Checkpoint:
    """One completed step of one job; times are ISO-8601 UTC text."""

    workflow_id: str
    job_id: str
    step_name: str
    step_index: int
    step_type: str
    kind: str
    output: dict[str, Any]
    run_id: str
    started_at: str
    completed_at: str

    def to_dict(self) -> dict[str, Any]:
        """The stored form (keys in the order they have always been written)."""
        return {
            "workflow_id": self.workflow_id,
            "job_id": self.job_id,
            "step_name": self.step_name,
            "step_index": self.step_index,
            "step_type": self.step_type,
            "kind": self.kind,
            "output": self.output,
            "run_id": self.run_id,
            "started_at": self.started_at,
            "completed_at": self.completed_at,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Checkpoint:
        """A stored checkpoint; ValueError if a key is missing."""
        try:
            return cls(
                workflow_id=raw["workflow_id"],
                job_id=raw["job_id"],
                step_name=raw["step_name"],
                step_index=raw["step_index"],
                step_type=raw["step_type"],
                kind=raw["kind"],
                output=raw["output"],
                run_id=raw["run_id"],
                started_at=raw["started_at"],
                completed_at=raw["completed_at"],
            )
        except KeyError as exc:
            raise ValueError(f"not a checkpoint: {exc.args[0]!r} is missing") from None
