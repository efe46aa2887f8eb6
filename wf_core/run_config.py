"""Per-job options (API.md `options`) checked against a spec and turned into run config."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from wf_core.specs import WorkflowSpec

# Longer is a mistake (or an attempt to run up the provider's bill), not a prompt.
MAX_PROMPT_CHARS = 4000


class OptionsError(ValueError):
    """Options that name an unknown step or a model the step does not support."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def validate_options(spec: WorkflowSpec, options: Any) -> dict[str, dict[str, str]]:
    """`{"models": {...}, "prompts": {...}}` checked against `spec`; returns it normalized."""
    if options is None:
        return {"models": {}, "prompts": {}}
    if not isinstance(options, dict):
        raise OptionsError("options", "must be a JSON object")
    unknown = set(options) - {"models", "prompts"}
    if unknown:
        raise OptionsError(f"options.{sorted(unknown)[0]}", "unknown option")
    names = {s.name for s in spec.steps}
    normalized: dict[str, dict[str, str]] = {"models": {}, "prompts": {}}
    for section in ("models", "prompts"):
        values = options.get(section) or {}
        if not isinstance(values, dict):
            raise OptionsError(f"options.{section}", "must be an object of step name to text")
        for step, value in values.items():
            at = f"options.{section}.{step}"
            if step not in names:
                raise OptionsError(at, f"unknown step {step!r} in workflow {spec.id!r}")
            if not isinstance(value, str) or not value.strip():
                raise OptionsError(at, "must be a non-empty string")
            if len(value) > MAX_PROMPT_CHARS:
                message = f"is {len(value):,} characters long; at most {MAX_PROMPT_CHARS:,}"
                raise OptionsError(at, message)
            if section == "models" and value not in spec.supported_models.get(step, []):
                allowed = ", ".join(spec.supported_models.get(step, [])) or "none"
                raise OptionsError(at, f"model {value!r} is not supported (supported: {allowed})")
            normalized[section][step] = value
    return normalized


def build_run_config(
    spec: WorkflowSpec,
    options: Any,
    source: str,
    steps: set[str] | None = None,
) -> dict[str, Any]:
    """Run config for the job's `steps` (default: all): models, prompts and the input file."""
    checked = validate_options(spec, options)
    ops: dict[str, Any] = {}
    for step in spec.steps:
        if steps is not None and step.name not in steps:
            continue
        config: dict[str, str] = {}
        if step.name in checked["models"]:
            config["model"] = checked["models"][step.name]
        if step.name in checked["prompts"]:
            config["prompt"] = checked["prompts"][step.name]
        if step.type == "input":
            config["source"] = source
        ops[spec.op_name(step.name)] = {"config": config}
    return {"ops": ops}


def config_for_steps(
    spec: WorkflowSpec, parent_run_config: Mapping[str, Any] | None, steps: Iterable[str]
) -> dict[str, Any]:
    """A parent run's op config kept for `steps` only (a run of a subset refuses the rest)."""
    wanted = {spec.op_name(step) for step in steps}
    parent_ops = (parent_run_config or {}).get("ops", {})
    return {"ops": {op: copy.deepcopy(cfg) for op, cfg in parent_ops.items() if op in wanted}}
