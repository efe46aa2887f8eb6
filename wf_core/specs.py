"""Workflow spec files: pydantic models, loading and the checks that a spec is runnable."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from wf_core import settings
from wf_core.models import MODELS
from wf_core.step_kinds import STEP_KIND_TABLE as STEP_KINDS

_ID_PATTERN = r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$"
_STEP_PATTERN = r"^[a-z][a-z0-9_]*$"


class SpecError(ValueError):
    """A spec file that cannot be loaded, naming the file and the field at fault."""

    def __init__(self, path: Path | str, field: str, message: str) -> None:
        super().__init__(f"{path}: {field}: {message}")
        self.path = str(path)
        self.field = field
        self.message = message


class StepSpec(BaseModel):
    """One step of a workflow: which kind runs it, on which inputs, with which model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_STEP_PATTERN)
    type: Literal["input", "generation", "transform"]
    kind: str
    description: str
    default_model: str | None = None
    inputs: list[str] | None = None
    max_attempts: int = Field(default=5, ge=1, le=100)
    fallback_models: list[str] = []


class WorkflowSpec(BaseModel):
    """A whole workflow as declared in `workflow_specs/<id>.yaml`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=_ID_PATTERN)
    name: str
    description: str
    icon: str = ""
    category: str
    preview_video: str | None = None
    preview_thumbnail: str | None = None
    enabled: bool = True
    default_prompts: dict[str, str] = {}
    supported_models: dict[str, list[str]] = {}
    steps: list[StepSpec] = Field(min_length=1)
    estimated_duration_seconds: int = Field(ge=0)
    credits_cost: int = Field(ge=0)

    def op_name(self, step: str) -> str:
        """The op name Dagster gives a step's asset; run config is keyed by it."""
        return f"{self.job_name}__{step}"

    @property
    def job_name(self) -> str:
        """The Dagster job (and asset group) name: the id with dashes as underscores."""
        return self.id.replace("-", "_")

    def step(self, name: str) -> StepSpec:
        """The step called `name`."""
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(name)

    def step_index(self, name: str) -> int:
        """The position of step `name` in the spec (0-based, as API.md numbers steps)."""
        return [s.name for s in self.steps].index(name)

    def inputs_of(self, step: StepSpec) -> list[str]:
        """Upstream step names: declared `inputs`, else the previous step."""
        if step.inputs is not None:
            return list(step.inputs)
        index = self.step_index(step.name)
        return [self.steps[index - 1].name] if index > 0 else []

    def downstream_of(self, names: set[str]) -> set[str]:
        """`names` and every step that depends on one of them, directly or not."""
        closed = set(names)
        changed = True
        while changed:
            changed = False
            for step in self.steps:
                if step.name not in closed and closed & set(self.inputs_of(step)):
                    closed.add(step.name)
                    changed = True
        return closed


def _check(spec: WorkflowSpec) -> list[tuple[str, str]]:
    """Semantic checks pydantic's field types cannot express, as (field, message)."""
    problems: list[tuple[str, str]] = []
    names = [s.name for s in spec.steps]
    for i, step in enumerate(spec.steps):
        at = f"steps[{i}]"
        if step.name in names[:i]:
            problems.append((f"{at}.name", f"duplicate step name {step.name!r}"))
        kind = STEP_KINDS.get(step.kind)
        if kind is None:
            known = ", ".join(sorted(STEP_KINDS))
            problems.append(
                (f"{at}.kind", f"unknown step kind {step.kind!r} (registered: {known})")
            )
            continue
        if step.type not in kind.step_types:
            problems.append((f"{at}.type", f"kind {step.kind!r} cannot be a {step.type!r} step"))
        for j, upstream in enumerate(step.inputs or []):
            if upstream not in names:
                problems.append((f"{at}.inputs[{j}]", f"unknown step name {upstream!r}"))
        if step.type == "input" and step.inputs:
            problems.append((f"{at}.inputs", "an input step takes no inputs"))
        if step.type != "input" and i == 0 and not step.inputs:
            problems.append((f"{at}.type", "the first step must be an input step"))
        problems += _check_models(spec, step, at, kind.needs_model)
    for step_name in spec.supported_models:
        if step_name not in names:
            problems.append((f"supported_models.{step_name}", f"unknown step name {step_name!r}"))
    for step_name in spec.default_prompts:
        if step_name not in names:
            problems.append((f"default_prompts.{step_name}", f"unknown step name {step_name!r}"))
    if not problems:
        cycle = _find_cycle(spec)
        if cycle:
            problems.append(("steps", f"cycle in step inputs: {' -> '.join(cycle)}"))
    return problems


def _check_models(
    spec: WorkflowSpec, step: StepSpec, at: str, needs_model: bool
) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    supported = spec.supported_models.get(step.name, [])
    for j, model_id in enumerate(supported):
        model = MODELS.get(model_id)
        if model is None:
            problems.append((f"supported_models.{step.name}[{j}]", f"unknown model {model_id!r}"))
        elif step.kind not in model.tasks:
            problems.append(
                (
                    f"supported_models.{step.name}[{j}]",
                    f"model {model_id!r} cannot run {step.kind!r}",
                )
            )
    if not needs_model:
        if step.default_model or supported:
            problems.append((f"{at}.default_model", f"kind {step.kind!r} takes no model"))
        return problems
    if step.default_model is None:
        problems.append((f"{at}.default_model", "a step of this kind needs a default_model"))
    elif step.default_model not in supported:
        problems.append(
            (
                f"{at}.default_model",
                f"{step.default_model!r} is not in supported_models.{step.name}",
            )
        )
    for j, model_id in enumerate(step.fallback_models):
        if model_id not in supported:
            problems.append(
                (
                    f"{at}.fallback_models[{j}]",
                    f"{model_id!r} is not in supported_models.{step.name}",
                )
            )
    if step.type == "generation" and not spec.default_prompts.get(step.name, "").strip():
        problems.append(
            (f"default_prompts.{step.name}", "a generation step needs a default prompt")
        )
    return problems


def _find_cycle(spec: WorkflowSpec) -> list[str] | None:
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(name: str) -> list[str] | None:
        if state.get(name) == 1:
            return path[path.index(name) :] + [name]
        if state.get(name) == 2:
            return None
        state[name] = 1
        path.append(name)
        for upstream in spec.inputs_of(spec.step(name)):
            found = visit(upstream)
            if found:
                return found
        path.pop()
        state[name] = 2
        return None

    for step in spec.steps:
        found = visit(step.name)
        if found:
            return found
    return None


def load_spec(path: Path) -> WorkflowSpec:
    """Parse and check one spec file; any problem raises SpecError naming file and field."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SpecError(path, "<file>", f"not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise SpecError(path, "<file>", "a spec must be a YAML mapping")
    try:
        spec = WorkflowSpec.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in first["loc"])
        raise SpecError(path, field.replace(".[", "[") or "<root>", first["msg"]) from None
    problems = _check(spec)
    if problems:
        field, message = problems[0]
        raise SpecError(path, field, message)
    if path.stem != spec.id:
        raise SpecError(path, "id", f"id {spec.id!r} must match the file name {path.stem!r}")
    return spec


@dataclass(frozen=True)
class SpecDir:
    """What a spec folder holds: the valid specs by id, and each bad file's error."""

    specs: dict[str, WorkflowSpec]
    errors: list[SpecError] = field(default_factory=list)


def read_spec_dir(directory: Path | None = None) -> SpecDir:
    """Every valid `*.yaml` spec in `directory`; a bad file is reported, never fatal to others."""
    directory = directory or settings.specs_dir()
    specs: dict[str, WorkflowSpec] = {}
    errors: list[SpecError] = []
    for path in sorted(directory.glob("*.yaml")):
        try:
            spec = load_spec(path)
        except SpecError as exc:
            errors.append(exc)
            _log.error("spec file skipped: %s", exc)
            continue
        except OSError as exc:  # removed between the listing and the read
            errors.append(SpecError(path, "<file>", f"unreadable: {exc.strerror}"))
            continue
        specs[spec.id] = spec
    return SpecDir(specs, errors)


def load_specs(directory: Path | None = None) -> dict[str, WorkflowSpec]:
    """Every valid spec in `directory` (default: settings.specs_dir()), keyed by id."""
    return read_spec_dir(directory).specs


def load_specs_strict(directory: Path | None = None) -> dict[str, WorkflowSpec]:
    """Every spec in `directory`; the first bad file raises its SpecError (checks, CI)."""
    found = read_spec_dir(directory)
    if found.errors:
        raise found.errors[0]
    return found.specs


def spec_digest(spec: WorkflowSpec) -> str:
    """The version of a spec: a digest of its content (same content, same version)."""
    body = json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def spec_from_snapshot(snapshot: dict[str, Any]) -> WorkflowSpec:
    """A stored snapshot back as a spec (its own checks not re-run: it ran once)."""
    return WorkflowSpec.model_validate(snapshot)


def continuation_problem(
    pinned: WorkflowSpec, current: WorkflowSpec | None, steps: list[str]
) -> str | None:
    """Why the running code cannot continue `steps` of a job pinned to `pinned`, or None.

    A job runs its remaining steps on its own version; the code location must still
    have each of those steps with the same kind and inputs, its kind registered, and
    its models known.
    """
    if current is None:
        return f"workflow {pinned.id!r} is no longer defined"
    for name in steps:
        old = pinned.step(name)
        try:
            new = current.step(name)
        except KeyError:
            return f"step {name!r} of workflow {pinned.id!r} no longer exists"
        if (new.kind, new.type, current.inputs_of(new)) != (
            old.kind,
            old.type,
            pinned.inputs_of(old),
        ):
            return f"step {name!r} of workflow {pinned.id!r} changed shape"
        if old.kind not in STEP_KINDS:
            return f"step kind {old.kind!r} is no longer registered"
        for model in [m for m in (old.default_model, *old.fallback_models) if m]:
            if model not in MODELS:
                return f"model {model!r} of step {name!r} is no longer available"
    return None


_log = logging.getLogger(__name__)
