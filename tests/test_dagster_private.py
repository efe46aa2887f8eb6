"""Private Dagster APIs (`dagster._*`) live in runtime/dagster_private.py only, written
against the pinned Dagster: an upgrade fails here, at that module."""

from __future__ import annotations

import ast
import importlib
import re
import tomllib
from pathlib import Path

import dagster as dg

from runtime import dagster_private
from wf_core.settings import REPO_ROOT

PRIVATE_MODULE = REPO_ROOT / "runtime" / "dagster_private.py"
CLASS_PATHS = {
    "DEFAULT_RUN_LAUNCHER": dg.DefaultRunLauncher,
    "QUEUED_RUN_COORDINATOR": dg.QueuedRunCoordinator,
    "LOCAL_COMPUTE_LOG_MANAGER": None,  # not exported publicly: the class must only exist
    "NOOP_COMPUTE_LOG_MANAGER": None,
}


def pinned_dagster() -> str:
    """The version constraints.txt pins `dagster` to."""
    text = (REPO_ROOT / "constraints.txt").read_text()
    match = re.search(r"^dagster==(\S+)$", text, flags=re.MULTILINE)
    assert match, "constraints.txt pins no dagster version"
    return match.group(1)


def test_the_installed_dagster_is_the_one_the_module_was_written_against() -> None:
    pinned = pinned_dagster()
    assert dg.__version__ == pinned
    # A new pin means reading runtime/dagster_private.py again, then saying so in it.
    assert f"dagster=={pinned}" in (dagster_private.__doc__ or "")


def test_every_private_name_still_exists() -> None:
    for name in dagster_private.__all__:
        assert getattr(dagster_private, name, None) is not None, name


def test_every_class_dagster_yaml_names_still_exists() -> None:
    for constant, public in CLASS_PATHS.items():
        module, name = getattr(dagster_private, constant)
        found = getattr(importlib.import_module(module), name)
        assert isinstance(found, type), constant
        if public is not None:
            assert found is public, constant
    assert set(CLASS_PATHS) <= set(dagster_private.__all__)


def test_every_preloaded_module_still_exists() -> None:
    for name in dagster_private.PRELOAD_MODULES:
        assert name.startswith("dagster._")
        importlib.import_module(name)


def private_uses(source: str) -> list[tuple[int, str]]:
    """(line, name) of each import of `dagster._*` (or `from dagster import _x`) and each
    string naming a `dagster._*` module (dagster.yaml class paths, importlib), by line."""
    found = []
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
            if node.module == "dagster":
                names = [f"dagster.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names = [node.value]
        found += [(node.lineno, name) for name in names if name.startswith("dagster._")]
    return sorted(found)


def product_files() -> list[Path]:
    """The engine's modules: every package import-linter checks, the composition root and
    the scripts."""
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    packages = pyproject["tool"]["importlinter"]["root_packages"]
    files = [REPO_ROOT / "definitions.py", *(REPO_ROOT / "scripts").rglob("*.py")]
    for package in packages:
        files += (REPO_ROOT / package).rglob("*.py")
    return sorted(files)


def test_no_other_product_module_uses_private_dagster() -> None:
    files = product_files()
    assert PRIVATE_MODULE in files and REPO_ROOT / "runtime" / "launcher.py" in files
    uses = [
        f"{path.relative_to(REPO_ROOT)}:{line} {name}"
        for path in files
        if path != PRIVATE_MODULE
        for line, name in private_uses(path.read_text())
    ]
    assert uses == [], "use these through runtime.dagster_private:\n" + "\n".join(uses)


def test_the_scan_sees_each_kind_of_private_use() -> None:
    assert len(private_uses(PRIVATE_MODULE.read_text())) >= 15  # its imports and class paths
    probe = (
        "import dagster._core.events\n"
        "from dagster import _check\n"
        "from dagster._serdes import pack_value\n"
        "import dagster as dg\n"
        "from dagster import DagsterEvent\n"
        "LAUNCHER = {'module': 'dagster._core.launcher', 'class': 'DefaultRunLauncher'}\n"
    )
    assert private_uses(probe) == [
        (1, "dagster._core.events"),
        (2, "dagster._check"),
        (3, "dagster._serdes"),
        (6, "dagster._core.launcher"),
    ]
