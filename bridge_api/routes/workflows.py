"""`GET /workflows/list`: the enabled workflows, straight from `workflow_specs/`."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from wf_core.specs import WorkflowSpec, spec_digest

bp = Blueprint("workflows", __name__, url_prefix="/workflows")


def workflow_summary(spec: WorkflowSpec) -> dict:
    """A spec shaped as API.md's workflow entry."""
    return {
        "id": spec.id,
        "name": spec.name,
        "description": spec.description,
        "icon": spec.icon,
        "category": spec.category,
        "preview_video": spec.preview_video,
        "preview_thumbnail": spec.preview_thumbnail,
        "enabled": spec.enabled,
        "default_prompts": spec.default_prompts,
        "supported_models": spec.supported_models,
        "steps": [{"name": s.name, "description": s.description} for s in spec.steps],
        "estimated_duration_seconds": spec.estimated_duration_seconds,
        "credits_cost": spec.credits_cost,
        "spec_version": spec_digest(spec),
    }


@bp.get("/list")
def list_workflows():
    """Every enabled workflow the orchestrator can run now (a bad file hides no other)."""
    specs = current_app.extensions["specs"].runnable()
    return jsonify({"workflows": [workflow_summary(s) for s in specs.values() if s.enabled]})
