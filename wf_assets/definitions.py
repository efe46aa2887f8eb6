"""The code location `workspace.yaml` loads: one Definitions, built from the spec files."""

from wf_assets.build import build_definitions
from wf_assets.specs import load_specs

defs = build_definitions(load_specs())
