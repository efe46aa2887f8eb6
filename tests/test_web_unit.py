"""The web app's own unit tests (Vitest: its components, the API client and the SSE hook)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from wf_core.settings import REPO_ROOT

WEB = REPO_ROOT / "web"


def test_vitest_suite_passes() -> None:
    npm = shutil.which("npm")
    if npm is None or not (WEB / "node_modules" / ".package-lock.json").is_file():
        pytest.fail("web/node_modules is missing: run `make install` (Node.js and npm)")
    result = subprocess.run(
        [npm, "test", "--prefix", str(WEB), "--", "--reporter=dot", "--maxWorkers=2"],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "CI": "true", "NO_COLOR": "1"},
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert " passed" in result.stdout and " failed" not in result.stdout
