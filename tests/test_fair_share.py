"""Fair share between users: Dagster's run queue caps each user's runs in progress.

The cap is written into dagster.yaml (runtime/instance.py); on a real stack, user B's one
job submitted behind 200 of user A's starts at the next free slot, before A's backlog.
"""

from __future__ import annotations

import time
import uuid

import dagster as dg
import pytest
import yaml

from runtime.instance import write_instance_yaml
from runtime.stack import DagsterStack
from tests.conftest import SAMPLE_IMAGE
from wf_core import tags as t
from wf_core.job_ids import JOBS_PARTITIONS_NAME
from wf_core.specs import WorkflowSpec


def _limits(tmp_path) -> list[dict]:
    written = write_instance_yaml(tmp_path / "home", pg_url="")
    return yaml.safe_load(written.read_text())["run_coordinator"]["config"][
        "tag_concurrency_limits"
    ]


def test_each_user_gets_one_slot_fewer_than_the_queue_by_default(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MAX_CONCURRENT_RUNS", "6")
    monkeypatch.delenv("MAX_RUNS_PER_USER", raising=False)
    per_user = {"key": t.USER, "value": {"applyLimitPerUniqueValue": True}, "limit": 5}
    assert per_user in _limits(tmp_path)
    monkeypatch.setenv("MAX_RUNS_PER_USER", "2")
    assert {**per_user, "limit": 2} in _limits(tmp_path)
    monkeypatch.setenv("MAX_RUNS_PER_USER", "0")  # off: only the one-run-per-job limit
    assert [limit["key"] for limit in _limits(tmp_path)] == ["dagster/partition"]


@pytest.mark.stack
@pytest.mark.timeout(600)
def test_user_b_starts_within_one_slot_behind_200_jobs_of_user_a(
    tmp_path, monkeypatch, specs: dict[str, WorkflowSpec]
) -> None:
    monkeypatch.setenv("MAX_CONCURRENT_RUNS", "3")
    monkeypatch.setenv("MAX_RUNS_PER_USER", "2")
    spec = specs["img-edit-to-video"]
    env = {"MEDIA_DIR": str(tmp_path / "media")}
    with DagsterStack(tmp_path / "home", env=env) as stack:
        # No daemon while the queue fills: all of user A's 200 jobs are queued (none has
        # started) when user B's one comes, the worst case for B.
        stack.kill("daemon")

        def submit(user: str) -> str:
            return stack.launch_job(spec, str(uuid.uuid4()), SAMPLE_IMAGE, user=user)

        _queue_copies(stack.instance, submit("user-a"), "user-a", 199)
        b_run = submit("user-b")
        stack.restart("daemon")
        deadline = time.time() + 120
        while (b_started := _record(stack.instance, b_run).start_time) is None:
            assert time.time() < deadline, "user B's run never started"
            time.sleep(0.2)
        a_runs = stack.instance.get_run_records(
            filters=dg.RunsFilter(tags={t.USER: "user-a"}), limit=500
        )
    assert len(a_runs) == 200
    ahead = [r for r in a_runs if r.start_time is not None and r.start_time < b_started]
    # Of 3 slots, A may hold its 2: B takes the one left, not the 201st place in the queue.
    assert len(ahead) <= 2


def _queue_copies(instance: dg.DagsterInstance, run_id: str, user: str, count: int) -> None:
    """`count` more queued jobs like `run_id`'s, each with its own partition and tags, written
    straight into the instance (as bench/outage.py writes its runs): launching each through
    GraphQL costs the webserver about a second per run on two busy cores."""
    template = instance.get_run_by_id(run_id)
    assert template is not None and template.status == dg.DagsterRunStatus.QUEUED
    workflow = template.tags[t.WORKFLOW]
    job_ids = [str(uuid.uuid4()) for _ in range(count)]
    instance.add_dynamic_partitions(JOBS_PARTITIONS_NAME, job_ids)
    for job_id in job_ids:
        tags = {**template.tags, **t.job_tags(workflow, job_id, user, "test")}
        instance.add_run(template._replace(run_id=str(uuid.uuid4()), tags=tags))


def _record(instance: dg.DagsterInstance, run_id: str) -> dg.RunRecord:
    (record,) = instance.get_run_records(filters=dg.RunsFilter(run_ids=[run_id]))
    return record
