"""The Pythons `make` accepts are those pyproject declares, and the pinned set supports
every one of them (the installed packages' own Requires-Python)."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import tomllib

import pytest
from packaging.specifiers import SpecifierSet

from wf_core.settings import REPO_ROOT

MINORS = [f"3.{minor}" for minor in range(8, 17)]


def declared() -> SpecifierSet:
    """pyproject's requires-python."""
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    return SpecifierSet(pyproject["project"]["requires-python"])


def make_accepts() -> list[str]:
    """The minors the Makefile's check lets through: `(3, a) <= v < (3, b)`."""
    makefile = (REPO_ROOT / "Makefile").read_text()
    match = re.search(r"\(3, (\d+)\) <= v < \(3, (\d+)\)", makefile)
    assert match, "the Makefile's Python check is not `(3, a) <= v < (3, b)`"
    low, high = int(match.group(1)), int(match.group(2))
    return [f"3.{minor}" for minor in range(low, high)]


def pinned() -> list[str]:
    """The distribution names constraints.txt pins."""
    lines = (REPO_ROOT / "constraints.txt").read_text().splitlines()
    return [line.split("==")[0].strip() for line in lines if "==" in line]


def test_make_accepts_what_pyproject_declares() -> None:
    spec = declared()
    assert make_accepts() == [m for m in MINORS if f"{m}.0" in spec]
    assert f"{sys.version_info.major}.{sys.version_info.minor}" in make_accepts()


def test_every_accepted_python_is_supported_by_every_pinned_package() -> None:
    refusals = []
    for name in pinned():
        requires = _requires_python(name)
        for minor in make_accepts():
            if requires and f"{minor}.0" not in SpecifierSet(requires):
                refusals.append(f"{name} ({requires}) refuses {minor}")
    assert refusals == []


def test_the_range_is_all_that_the_dagster_family_and_the_rest_allow() -> None:
    """One minor past either end is refused by a pinned package (so nothing is left out)."""
    accepted = make_accepts()
    below, above = f"3.{int(accepted[0][2:]) - 1}", f"3.{int(accepted[-1][2:]) + 1}"
    for outside in (below, above):
        refused_by = [
            name
            for name in pinned()
            if (req := _requires_python(name)) and f"{outside}.0" not in SpecifierSet(req)
        ]
        assert refused_by, f"no pinned package refuses {outside}: make could accept it"
    dagster = SpecifierSet(importlib.metadata.metadata("dagster")["Requires-Python"])
    assert f"{above}.0" not in dagster  # the upper end is Dagster's own


def _requires_python(name: str) -> str | None:
    """A pinned package's Requires-Python; None when it has none or is not installed here."""
    try:
        return importlib.metadata.metadata(name).get("Requires-Python")
    except importlib.metadata.PackageNotFoundError:
        return None


@pytest.mark.parametrize(
    "version,accepted", [((3, 10), False), ((3, 11), True), ((3, 14), True), ((3, 15), False)]
)
def test_the_makefile_check_says_what_it_needs(version: tuple[int, int], accepted: bool) -> None:
    """The check as make runs it, with the interpreter's version replaced."""
    makefile = (REPO_ROOT / "Makefile").read_text()
    check = re.search(r"-c '(import sys; v = sys.version_info\[:2\];[^']*)'", makefile)
    assert check, "the Makefile's Python check moved"
    code = check.group(1).replace("v = sys.version_info[:2]", f"v = {version!r}")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert (done.returncode == 0) is accepted, done.stderr
    if not accepted:
        assert "Python 3.11 to 3.14 is needed" in done.stderr
