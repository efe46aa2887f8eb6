"""The code location loads through Dagster's own CLI; a bad spec is named, never fatal."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import yaml

from definitions import build_definitions
from wf_core.settings import REPO_ROOT
from wf_core.specs import load_specs

DAGSTER = str(Path(sys.executable).with_name("dagster"))


def _validate(tmp_path: Path, specs_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "WORKFLOW_SPECS_DIR": str(specs_dir)}
    return subprocess.run(
        [DAGSTER, "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_dagster_definitions_validate_passes(tmp_path: Path) -> None:
    result = _validate(tmp_path, REPO_ROOT / "workflow_specs")
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_bad_spec_is_named_and_skipped_never_taking_the_others_down(tmp_path: Path) -> None:
    specs_dir = tmp_path / "specs"
    shutil.copytree(REPO_ROOT / "workflow_specs", specs_dir)
    bad = yaml.safe_load((specs_dir / "style-transfer-video.yaml").read_text())
    bad["steps"][2]["kind"] = "image_teleport"
    (specs_dir / "style-transfer-video.yaml").write_text(yaml.safe_dump(bad))
    result = _validate(tmp_path, specs_dir)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "style-transfer-video.yaml: steps[2].kind: unknown step kind 'image_teleport'" in output
    specs = load_specs(specs_dir)
    assert set(specs) == {"img-edit-to-video"}
    build_definitions(specs).resolve_job_def("img_edit_to_video")


def test_one_asset_per_step_and_one_job_per_workflow() -> None:
    specs = load_specs()
    defs = build_definitions(specs)
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    expected = {f"{s.id}/{step.name}" for s in specs.values() for step in s.steps}
    assert keys == expected
    for spec in specs.values():
        job = defs.resolve_job_def(spec.job_name)
        assert job.executor_def.name == "in_process"
        assert job.partitions_def.name == "jobs"
        assert {n.name for n in job.nodes} == {spec.op_name(s.name) for s in spec.steps}
        for step in spec.steps:
            upstream = graph.get(dg.AssetKey([spec.id, step.name])).parent_keys
            assert {k.path[1] for k in upstream} == set(spec.inputs_of(step))
