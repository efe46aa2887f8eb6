"""GET /workflows/jobs against a real dagster-webserver: one page, one snapshots request.

A module-wide stack serves an instance holding jobs of every kind (completed, failed,
pending_retry, retried once and twice, cancelled) for two users, written through the
instance's public API: run records and the checkpoints (materializations) their steps
would have written. The list must answer exactly what per-job snapshots give, in a
number of GraphQL requests that does not depend on the page's length.
"""

from __future__ import annotations

import uuid
from typing import Any

import dagster as dg
import pytest
from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData
from flask import jsonify

from bridge_api import create_app
from bridge_api.dagster_client.gateway import DagsterGateway
from bridge_api.jobs.execution_view import execution_view
from runtime.stack import DagsterStack
from wf_core import tags as t
from wf_core.checkpoint import Checkpoint
from wf_core.job_ids import JOBS_PARTITIONS_NAME, new_job_id
from wf_core.specs import WorkflowSpec
from wf_core.tags import cancel_description

pytestmark = pytest.mark.stack

WORKFLOW = "img-edit-to-video"
USER = "local-dev"  # every request's user with AUTH_MODE=disabled
OTHER = "someone-else"
# Oldest first. The retried kinds are the oldest jobs, so that the newest page of up to
# 50 jobs holds first runs only, and paging through the rest crosses dense retries.
KINDS = ["retried_twice", "retried", "retried_twice", "retried"] * 3 + [
    "completed",
    "failed",
    "pending_retry",
    "completed",
    "cancelled",
    "completed",
] * 8


class CountingGateway(DagsterGateway):
    """The real gateway, counting the GraphQL requests it sends."""

    requests = 0

    def query(self, document: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        self.requests += 1
        return super().query(document, variables)


class Jobs:
    """Writes jobs into the stack's instance as the steps and launchers would have."""

    def __init__(self, instance: dg.DagsterInstance, spec: WorkflowSpec, gateway) -> None:
        self.instance = instance
        self.spec = spec
        self.gateway = gateway
        self.first_runs: dict[str, str] = {}  # job id -> its first run's id

    def add(self, kind: str, user: str) -> str:
        job_id = new_job_id()
        self.instance.add_dynamic_partitions(JOBS_PARTITIONS_NAME, [job_id])
        steps = [step.name for step in self.spec.steps]
        if kind == "completed":
            self._run(job_id, user, 1, dg.DagsterRunStatus.SUCCESS, steps)
        elif kind == "failed":
            failure = self._failure("image_edit", "content_rejected", retryable=False)
            self._run(job_id, user, 1, dg.DagsterRunStatus.FAILURE, steps[:1], failure)
        elif kind == "pending_retry":
            failure = self._failure("video_generation", "timeout", retryable=True)
            self._run(job_id, user, 1, dg.DagsterRunStatus.FAILURE, steps[:2], failure)
        elif kind == "cancelled":
            self._run(job_id, user, 1, dg.DagsterRunStatus.CANCELED, steps[:1])
            self.gateway.mark_cancelled(self.spec, job_id, cancel_description(user))
        else:  # retried: fails, then a retry (or two) runs the rest
            failure = self._failure("image_edit", "rate_limit", retryable=True)
            parent = self._run(job_id, user, 1, dg.DagsterRunStatus.FAILURE, steps[:1], failure)
            if kind == "retried_twice":
                parent = self._run(
                    job_id, user, 2, dg.DagsterRunStatus.FAILURE, [], failure, parent
                )
            attempt = 3 if kind == "retried_twice" else 2
            self._run(job_id, user, attempt, dg.DagsterRunStatus.SUCCESS, steps[1:], None, parent)
        return job_id

    def late_retry(self, job_id: str, user: str) -> None:
        """The retry that completes a pending_retry job, made now."""
        steps = [step.name for step in self.spec.steps]
        parent = self.first_runs[job_id]
        self._run(job_id, user, 2, dg.DagsterRunStatus.SUCCESS, steps[2:], None, parent)

    def _failure(self, step: str, error_type: str, retryable: bool) -> dict[str, str]:
        return {
            t.ERROR_TYPE: error_type,
            t.RETRYABLE: "true" if retryable else "false",
            t.FAILED_STEP: step,
            t.FAILED_AT: "2026-11-30T12:00:00.000+00:00",
            t.ERROR_MESSAGE: f"{error_type} (test)",
            # The live retry sensor leaves these failures alone.
            t.RETRY_STATE: t.RETRY_DONE,
        }

    def _run(
        self,
        job_id: str,
        user: str,
        attempt: int,
        status: dg.DagsterRunStatus,
        steps: list[str],
        extra: dict[str, str] | None = None,
        parent: str | None = None,
    ) -> str:
        run_id = str(uuid.uuid4())
        tags = {**t.job_tags(self.spec.id, job_id, user, "test", attempt, parent), **(extra or {})}
        run = dg.DagsterRun(
            job_name=self.spec.job_name,
            run_id=run_id,
            status=status,
            run_config={"ops": {}},
            tags=tags,
        )
        self.instance.add_run(run)
        self.first_runs.setdefault(job_id, run_id)
        for step in steps:
            self._checkpoint(job_id, run_id, step)
        return run_id

    def _checkpoint(self, job_id: str, run_id: str, step: str) -> None:
        checkpoint = Checkpoint(
            workflow_id=self.spec.id,
            job_id=job_id,
            step_name=step,
            step_index=self.spec.step_index(step),
            step_type=self.spec.steps[self.spec.step_index(step)].type,
            kind=self.spec.steps[self.spec.step_index(step)].kind,
            output={"url": f"http://127.0.0.1/media/{job_id}/{step}", "run": run_id},
            run_id=run_id,
            started_at="2026-11-30T12:00:00.000+00:00",
            completed_at="2026-11-30T12:00:01.000+00:00",
        ).to_dict()
        materialization = dg.AssetMaterialization(
            asset_key=[self.spec.id, step],
            partition=job_id,
            metadata={"checkpoint": dg.MetadataValue.json(checkpoint)},
        )
        event = DagsterEvent(
            event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value,
            job_name=self.spec.job_name,
            step_key=self.spec.op_name(step),
            event_specific_data=StepMaterializationData(materialization),
        )
        self.instance.report_dagster_event(event, run_id)


@pytest.fixture(scope="module")
def env(tmp_path_factory, specs):
    root = tmp_path_factory.mktemp("jobs-list")
    with DagsterStack(root / "home", env={"MEDIA_DIR": str(root / "media")}) as stack:
        app = create_app(
            {
                "DAGSTER_GRAPHQL_URL": stack.graphql_url,
                "AUTH_MODE": "disabled",
                "MEDIA_DIR": str(root / "media"),
                "UPLOAD_DIR": str(root / "uploads"),
                "STATE_DB_URL": stack.state_db_url,
            }
        )
        # Generous: the suite runs beside CPU-bound processes.
        gateway = CountingGateway(stack.graphql_url, timeout=60)
        app.extensions["dagster"] = gateway
        jobs = Jobs(stack.instance, specs[WORKFLOW], gateway)
        mine = []
        for number, kind in enumerate(KINDS):
            mine.append(jobs.add(kind, USER))
            if number % 10 == 0:
                jobs.add("completed", OTHER)
        # The oldest pending_retry job is retried after every other run: it is on a page
        # after a cursor, and its retry newer than the cursor's run.
        jobs.late_retry(mine[KINDS.index("pending_retry")], USER)
        yield {"app": app, "gateway": gateway, "mine": mine[::-1], "jobs": jobs}


def _get(env, query: str):
    response = env["app"].test_client().get(f"/workflows/jobs{query}")
    assert response.status_code == 200, response.json
    return response


def _expected(env, job_ids: list[str], more: bool) -> bytes:
    """What the route answered when it read one snapshot per job."""
    app, gateway = env["app"], env["gateway"]
    with app.app_context():
        specs = app.extensions["specs"].all()
        jobs = []
        for job_id in job_ids:
            snapshot = gateway.snapshot(job_id, specs)
            summary = execution_view(
                specs[WORKFLOW], snapshot, app.extensions["retry_settings"], []
            )
            summary.pop("checkpoints")
            jobs.append(summary)
        cursor = env["jobs"].first_runs[job_ids[-1]] if more else None
        return jsonify({"jobs": jobs, "next_cursor": cursor}).get_data()


def test_the_list_is_what_per_job_snapshots_give(env) -> None:
    response = _get(env, "?limit=100")
    assert [job["job_id"] for job in response.json["jobs"]] == env["mine"]
    assert response.get_data() == _expected(env, env["mine"], more=False)
    statuses = {job["status"] for job in response.json["jobs"]}
    assert statuses == {"completed", "failed", "pending_retry", "cancelled"}


def test_batched_snapshots_equal_single_ones_with_run_configs(env, specs) -> None:
    gateway = env["gateway"]
    pairs = [(job_id, WORKFLOW) for job_id in env["mine"][-15:]]  # the retried ones
    batched = gateway.page_snapshots(pairs, specs, configs=True)
    assert batched == [gateway.snapshot(job_id, specs) for job_id, _ in pairs]
    assert all(len(snap.runs) > 1 and snap.run_configs for snap in batched[-12:])


@pytest.mark.parametrize(
    ("limit", "after", "requests"),
    [
        # Issue 23: the list is read from the job read model (wf_jobs), with no GraphQL
        # request at all, first page or after a cursor (before: 2 and 3 requests).
        (1, None, 0),
        (50, None, 0),
        (1, 2, 0),
        (40, 2, 0),
    ],
)
def test_a_page_is_a_constant_number_of_requests(
    env, limit: int, after: int | None, requests: int
) -> None:
    gateway, mine = env["gateway"], env["mine"]
    query = f"?limit={limit}"
    if after is not None:
        query += f"&cursor={env['jobs'].first_runs[mine[after]]}"
    start = 0 if after is None else after + 1
    before = gateway.requests
    response = _get(env, query)
    assert gateway.requests - before == requests
    assert len(response.json["jobs"]) == limit
    assert response.get_data() == _expected(env, mine[start : start + limit], more=True)


@pytest.mark.parametrize("limit", [3, 7])
def test_pages_follow_each_other_through_dense_retries(env, limit: int) -> None:
    seen: list[str] = []
    cursor = ""
    while True:
        response = _get(env, f"?limit={limit}" + (f"&cursor={cursor}" if cursor else ""))
        body = response.json
        page = [job["job_id"] for job in body["jobs"]]
        more = body["next_cursor"] is not None
        assert response.get_data() == _expected(env, page, more)
        seen.extend(page)
        if not more:
            break
        assert len(body["jobs"]) == limit
        assert body["next_cursor"] == env["jobs"].first_runs[seen[-1]]
        cursor = body["next_cursor"]
    assert seen == env["mine"]
    late = env["mine"][-1 - KINDS.index("pending_retry")]
    assert _get(env, "?limit=100").json["jobs"][env["mine"].index(late)]["status"] == "completed"
