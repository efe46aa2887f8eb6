"""JSON log lines: context fields on every line, and no secret in any of them."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys

import pytest

from wf_core.logging_json import Redactor, json_handler, log_context
from wf_core.settings import REPO_ROOT

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyLTEifQ.c2lnbmF0dXJlLXNpZ25hdHVyZQ"


@pytest.fixture
def logged():
    """A logger writing JSON lines to a buffer; the lines, parsed, after the test."""
    buffer = io.StringIO()
    logger = logging.getLogger("wf.test.logs")
    handler = json_handler(buffer, Redactor({"REPLICATE_API_TOKEN": "r8_secretsecretsecret"}))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, lambda: [json.loads(line) for line in buffer.getvalue().splitlines()]
    logger.removeHandler(handler)


def test_every_line_carries_the_bound_context(logged) -> None:
    logger, lines = logged
    with log_context(job_id="j1", run_id="r1", user="u1", workflow="w", step="s", attempt=2):
        logger.info("retrying %s", "s", extra={"sensor": "retry"})
    logger.info("outside")
    inside, outside = lines()
    assert inside["msg"] == "retrying s" and inside["level"] == "info"
    assert {k: inside[k] for k in ("job_id", "run_id", "user", "workflow", "step", "attempt")} == {
        "job_id": "j1",
        "run_id": "r1",
        "user": "u1",
        "workflow": "w",
        "step": "s",
        "attempt": 2,
    }
    assert inside["sensor"] == "retry" and "job_id" not in outside


@pytest.mark.parametrize(
    ("message", "secret"),
    [
        (f"Authorization: Bearer {JWT}", JWT),
        ("{'Authorization': 'Bearer opaque-token-123'}", "opaque-token-123"),
        (f"GET /jobs/1/stream?access_token={JWT}&x=1", JWT),
        (f"token {JWT} refused", JWT),
        ("calling with r8_secretsecretsecret", "r8_secretsecretsecret"),
        ("key r8_AbCdEfGh12345678 rejected", "r8_AbCdEfGh12345678"),
        ("secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        ("cloudinary://1234:s3cr3t-value@demo", "s3cr3t-value"),
        ("postgresql://app:pg-pass-word@db:5432/x", "pg-pass-word"),
    ],
)
def test_secrets_never_reach_a_line(logged, message: str, secret: str) -> None:
    logger, lines = logged
    logger.warning("%s", message)
    try:
        raise ValueError(message)
    except ValueError:
        logger.exception("failed")
    text = json.dumps(lines())
    assert secret not in text
    assert "[REDACTED]" in lines()[0]["msg"] and "[REDACTED]" in lines()[1]["exc"]


RUN_ONE_JOB = """
import json, sys
import dagster as dg
from pathlib import Path
from tests.conftest import Workbench, run_job
from wf_core.logging_json import dagster_python_logs
from wf_core.specs import load_specs
from wf_core.tags import job_tags

root, job_id = Path(sys.argv[1]), sys.argv[2]
spec = load_specs()["img-edit-to-video"]
bench = Workbench(root)
(root / "home").mkdir()
overrides = {"python_logs": dagster_python_logs()}
with dg.instance_for_test(temp_dir=str(root / "home"), overrides=overrides) as instance:
    tags = job_tags(spec.id, job_id, "user-7", "bridge", attempt=2)
    result = run_job(spec, instance, bench.resources(), job_id=job_id, tags=tags)
    done = sorted(
        e.asset_key.path[-1] for e in result.get_asset_materialization_events() if e.asset_key
    )
sys.stderr.flush()
print(json.dumps({"success": result.success, "run_id": result.run_id, "materialized": done}))
"""


def test_runs_log_json_lines_with_the_jobs_context(tmp_path) -> None:
    # A fresh interpreter, as a run worker is: its stderr is exactly what the run wrote.
    # (In the suite's shared interpreter this test once lost the video step's line after
    # other modules' in-process runs had configured logging; see the README's note.)
    from wf_core.job_ids import new_job_id

    job_id = new_job_id()
    done = subprocess.run(
        [sys.executable, "-c", RUN_ONE_JOB, str(tmp_path), job_id],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in os.environ.items() if k != "LOG_FORMAT"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["success"]
    assert outcome["materialized"] == ["image_edit", "upload", "video_generation"]
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    steps = [line for line in lines if line.get("event") == "STEP_SUCCESS"]
    assert {line["step"] for line in steps} == {"upload", "image_edit", "video_generation"}
    for line in steps:
        assert line["job_id"] == job_id and line["run_id"] == outcome["run_id"]
        assert (line["workflow"], line["user"], line["attempt"]) == (
            "img-edit-to-video",
            "user-7",
            2,
        )
