"""The model registry: our model ids, which step kinds each can run, how a provider calls it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from wf_core.step_kinds import STEP_KIND_TABLE as STEP_KINDS

MODELS_FILE = Path(__file__).with_name("models.yaml")


class ModelSpec(BaseModel):
    """One model: the step kinds it serves and the provider's model and input fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    tasks: list[str] = Field(min_length=1)
    provider_model: str = Field(pattern=r"^[\w.-]+/[\w.-]+(:[0-9a-f]+)?$")
    input: dict[str, Any]

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, tasks: list[str]) -> list[str]:
        unknown = [t for t in tasks if t not in STEP_KINDS]
        if unknown:
            raise ValueError(f"unknown step kinds {unknown}")
        return tasks

    def provider_input(self, prompt: str | None, image: str | None, **extra: Any) -> dict[str, Any]:
        """The provider's input dict, with $prompt/$image/$<name> placeholders filled in."""
        values = {"prompt": prompt, "image": image, **extra}

        def fill(value: Any) -> Any:
            if isinstance(value, list):
                return [fill(v) for v in value]
            if isinstance(value, str) and value.startswith("$") and value[1:] in values:
                return values[value[1:]]
            return value

        return {key: fill(value) for key, value in self.input.items()}


def load_models(path: Path = MODELS_FILE) -> dict[str, ModelSpec]:
    """Read the registry file into ModelSpecs keyed by model id."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return {model_id: ModelSpec(id=model_id, **entry) for model_id, entry in raw.items()}


MODELS: dict[str, ModelSpec] = load_models()
