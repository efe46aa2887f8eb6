"""The asset key of a workflow step: `<workflow>/<step>`."""

from __future__ import annotations

import dagster as dg

from wf_core.specs import WorkflowSpec


def asset_key_for(spec: WorkflowSpec, step: str) -> dg.AssetKey:
    """`<workflow>/<step>`: the asset key of one step."""
    return dg.AssetKey([spec.id, step])
