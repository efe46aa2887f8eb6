"""Dependencies run one way: the bridge loads the core and its gateway, never the engine."""

from __future__ import annotations

import json
import subprocess
import sys

import grimp

from wf_core.settings import REPO_ROOT

ENGINE = ("resources", "sensors", "wf_assets", "runtime", "definitions", "cloudinary", "dagster")


def _modules_after(statement: str) -> set[str]:
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_the_bridge_loads_no_engine_module() -> None:
    loaded = _modules_after("import bridge_api.app")
    assert "bridge_api.dagster_client.gateway" in loaded and "wf_core.job_state" in loaded
    engine = sorted(m for m in loaded if m.split(".")[0] in ENGINE)
    assert engine == [], engine


def test_the_core_loads_no_dagster_flask_or_httpx() -> None:
    modules = "specs errors models step_kinds tags job_ids job_state control run_config"
    imports = "; ".join(f"import wf_core.{m}" for m in modules.split())
    loaded = _modules_after(f"{imports}; import wf_core.retry_policy, wf_core.circuit_breaker")
    outside = {"dagster", "flask", "werkzeug", "httpx", *ENGINE}
    assert sorted(m for m in loaded if m.split(".")[0] in outside) == []


def _import_cycles(graph: grimp.ImportGraph, package: str) -> list[tuple[str, str]]:
    """Each direct import a -> b inside `package` for which b also reaches a."""
    found = []
    for module in sorted(m for m in graph.modules if m.startswith(package)):
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            inside = imported.startswith(package)
            if inside and graph.chain_exists(importer=imported, imported=module):
                found.append((module, imported))
    return found


def test_no_import_cycle_inside_the_bridge() -> None:
    """Imports inside functions count too (grimp reads every import statement)."""
    graph = grimp.build_graph("bridge_api")
    assert _import_cycles(graph, "bridge_api") == []
    # The check finds a cycle when there is one: the old feeds <-> stream pair, put back.
    graph.add_import(importer="bridge_api.streaming.readers", imported="bridge_api.routes.stream")
    assert _import_cycles(graph, "bridge_api") != []
