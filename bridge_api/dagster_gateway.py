"""Everything the bridge asks of Dagster, over its GraphQL API only.

The bridge never opens the Dagster instance nor imports the workflow definitions,
so it can run as its own service beside dagster-webserver.
"""

from __future__ import annotations

import functools
import json
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import yaml

from bridge_api.errors import ApiError
from wf_core import tags as t
from wf_core.job_state import RunView
from wf_core.specs import WorkflowSpec
from wf_core.tags import cancel_mark_path, is_cancel_mark

LOCATION = "workflows"
REPOSITORY = "__repository__"
JOBS_PARTITIONS = "jobs"
log = logging.getLogger(__name__)
RUN_FIELDS = "runId status creationTime updateTime startTime endTime tags { key value }"


@dataclass
class JobSnapshot:
    """One job as Dagster knows it: runs, checkpoints, cancel mark, progress."""

    job_id: str
    runs: list[RunView]
    checkpoints: dict[str, dict[str, Any]]
    cancelled: bool
    run_times: dict[str, dict[str, float | None]] = field(default_factory=dict)
    run_configs: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def owner(self) -> str | None:
        """The user who started the job (its first run's `wf/user` tag)."""
        first = min(self.runs, key=lambda r: r.created_at, default=None)
        return first.tags.get(t.USER) if first else None

    @property
    def workflow_id(self) -> str | None:
        """The workflow the job runs."""
        return self.runs[0].tags.get(t.WORKFLOW) if self.runs else None


class DagsterGateway:
    """A thin GraphQL client for the bridge's needs."""

    def __init__(self, graphql_url: str, timeout: float = 10.0) -> None:
        self.graphql_url = graphql_url
        self.timeout = timeout
        self._http = httpx.Client(timeout=timeout)

    def query(self, document: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run one GraphQL document; an unreachable or failing Dagster is a 503."""
        try:
            response = self._http.post(
                self.graphql_url, json={"query": document, "variables": variables or {}}
            )
        except httpx.HTTPError as exc:
            raise ApiError(
                503,
                "orchestrator_unavailable",
                f"Dagster is unreachable: {type(exc).__name__}",
                headers={"Retry-After": "5"},
            ) from exc
        if response.status_code >= 500 or response.status_code == 404:
            raise ApiError(
                503,
                "orchestrator_unavailable",
                f"Dagster answered HTTP {response.status_code}",
                headers={"Retry-After": "5"},
            )
        try:
            body = response.json()
        except ValueError:
            raise ApiError(
                503,
                "orchestrator_unavailable",
                "Dagster answered no JSON",
                headers={"Retry-After": "5"},
            ) from None
        if body.get("errors"):
            # The message may quote our query or server paths: it goes to the log only.
            log.error("GraphQL error: %s", body["errors"][0].get("message"))
            raise ApiError(502, "orchestrator_error", "The orchestrator refused the request")
        return body["data"]

    def reachable(self) -> bool:
        """Whether dagster-webserver answers."""
        try:
            return bool(self.query("{ version }").get("version"))
        except ApiError:
            return False

    def add_partition(self, job_id: str) -> None:
        """Register the job's dynamic partition (before its run is submitted)."""
        data = self.query(ADD_PARTITION, {**_repo(), "name": JOBS_PARTITIONS, "key": job_id})
        result = data["addDynamicPartition"]
        if result["__typename"] != "AddDynamicPartitionSuccess":
            raise ApiError(502, "orchestrator_error", result.get("message", "partition refused"))

    def delete_partition(self, job_id: str) -> None:
        """Remove a partition added for a request that then failed."""
        self.query(DELETE_PARTITION, {**_repo(), "name": JOBS_PARTITIONS, "key": job_id})

    def launch(
        self,
        job_name: str,
        run_config: dict,
        tags: dict[str, str],
        asset_selection: list[list[str]] | None = None,
    ) -> str:
        """Launch a run; its id. The outcome is always known: launched, or not (503).

        Each launch carries a unique `wf/launch_id` tag: when Dagster's answer is lost
        (timeout, dropped connection) the run is looked up by it, so a run that was
        created is never reported as not started.
        """
        launch_id = uuid.uuid4().hex
        params = {
            "selector": {
                "repositoryLocationName": LOCATION,
                "repositoryName": REPOSITORY,
                "pipelineName": job_name,
                "assetSelection": [{"path": path} for path in asset_selection]
                if asset_selection is not None
                else None,
            },
            "runConfigData": run_config,
            "mode": "default",
            "executionMetadata": {
                "tags": [
                    {"key": k, "value": v} for k, v in {**tags, t.LAUNCH_ID: launch_id}.items()
                ]
            },
        }
        try:
            data = self.query(LAUNCH, {"executionParams": params})
        except ApiError as exc:
            if exc.status != 503:
                raise
            run_id = self.find_launch(launch_id, wait=self.timeout)
            if run_id is None:
                log.warning("launch %s of %s: no answer and no run (%s)", launch_id, job_name, exc)
                raise _not_started() from None
            return run_id
        result = data["launchPipelineExecution"]
        if result["__typename"] != "LaunchRunSuccess":
            detail = result.get("message") or result["__typename"]
            log.error("launch of %s refused by Dagster: %s", job_name, detail)
            raise _not_started()
        return result["run"]["runId"]

    def find_launch(self, launch_id: str, wait: float = 0.0) -> str | None:
        """The run created by launch `launch_id`, looking for up to `wait` seconds."""
        deadline = time.monotonic() + wait
        while True:
            try:
                data = self.query(
                    USER_JOBS, {"tags": [{"key": t.LAUNCH_ID, "value": launch_id}], "limit": 1}
                )
                runs = _runs(data["runsOrError"])
                if runs:
                    return runs[0]["runId"]
            except ApiError:
                pass
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.5)

    def terminate(self, run_id: str) -> bool:
        """Stop a queued or running run; whether Dagster said it did (or the run is gone)."""
        data = self.query(TERMINATE, {"runId": run_id})
        kind = data["terminateRun"]["__typename"]
        if kind not in ("TerminateRunSuccess", "RunNotFoundError"):
            log.warning("terminate %s: %s", run_id, kind)
            return False
        return True

    def mark_cancelled(self, spec: WorkflowSpec, job_id: str, description: str) -> None:
        """Leave the cancel mark: an observation on the first step for the job's partition."""
        self.query(
            REPORT_OBSERVATION,
            {
                "params": {
                    "eventType": "ASSET_OBSERVATION",
                    "assetKey": {"path": _mark_path(spec)},
                    "partitionKeys": [job_id],
                    "description": description,
                },
            },
        )

    def job_ids_for_user(
        self, user: str, limit: int, cursor: str | None
    ) -> tuple[list, str | None]:
        """The user's jobs, newest first (their first runs), and the next cursor."""
        tags = [{"key": t.USER, "value": user}, {"key": t.ATTEMPT, "value": "1"}]
        data = self.query(USER_JOBS, {"tags": tags, "limit": limit + 1, "cursor": cursor})
        runs = _runs(data["runsOrError"])
        page = runs[:limit]
        next_cursor = page[-1]["runId"] if len(runs) > limit else None
        return [(_tag(r, t.JOB_ID), _tag(r, t.WORKFLOW)) for r in page], next_cursor

    def snapshot(self, job_id: str, specs: Mapping[str, WorkflowSpec]) -> JobSnapshot:
        """The job's runs, checkpoints and cancel mark, in one round trip.

        Checkpoints are read from each run's materializations, which needs no asset
        lookup; the cancel mark (an observation on each workflow's first step) is read
        in the same request, since it decides the status whatever the runs say.
        """
        marks = sorted({tuple(_mark_path(spec)) for spec in specs.values()})
        variables: dict[str, Any] = {"tags": [{"key": t.JOB_ID, "value": job_id}], "job": job_id}
        variables.update({f"m{i}": list(path) for i, path in enumerate(marks)})
        data = self.query(snapshot_document(len(marks)), variables)
        runs, times, configs, found = [], {}, {}, []
        for raw in _runs(data["runsOrError"]):
            tags = {tag["key"]: tag["value"] for tag in raw["tags"]}
            runs.append(RunView(raw["runId"], raw["status"], tags, raw["creationTime"]))
            times[raw["runId"]] = {
                "start": raw["startTime"],
                "end": raw["endTime"],
                "updated": raw["updateTime"],
            }
            if raw.get("runConfigYaml"):
                configs[raw["runId"]] = yaml.safe_load(raw["runConfigYaml"]) or {}
            for event in raw.get("assetMaterializations") or []:
                if event.get("partition") == job_id:
                    found.append(event)
        snapshot = JobSnapshot(job_id, runs, {}, False, times, configs)
        spec = specs.get(snapshot.workflow_id or "")
        if spec is None:
            return snapshot
        mark = data.get(f"m{marks.index(tuple(_mark_path(spec)))}") or {}
        snapshot.cancelled = _has_cancel_mark(mark)
        steps = {(spec.id, step.name): step.name for step in spec.steps}
        for event in sorted(found, key=lambda e: float(e["timestamp"])):
            step = steps.get(tuple(event["assetKey"]["path"]))
            checkpoint = _checkpoint_of(event)
            if step and checkpoint is not None:
                snapshot.checkpoints[step] = checkpoint
        return snapshot

    def progress(self, run_id: str, after: str | None) -> tuple[list[dict], str | None]:
        """Step starts and `progress N% ...` log lines of a run since cursor `after`."""
        data = self.query(RUN_LOGS, {"runId": run_id, "after": after})
        connection = data["logsForRun"]
        if connection.get("__typename") != "EventConnection":
            return [], after
        return connection["events"], connection["cursor"]


def _not_started() -> ApiError:
    # Details (the mutation, paths, tags) go to the log, never to the client.
    return ApiError(
        503,
        "orchestrator_unavailable",
        "The orchestrator did not start the job; nothing was started. Try again shortly.",
        headers={"Retry-After": "5"},
    )


def _repo() -> dict[str, Any]:
    return {"selector": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}}


def _runs(result: dict) -> list[dict]:
    if result.get("__typename") != "Runs":
        raise ApiError(502, "orchestrator_error", result.get("message", "runs unavailable"))
    return result["results"]


def _tag(run: dict, key: str) -> str | None:
    return next((tag["value"] for tag in run["tags"] if tag["key"] == key), None)


def _mark_path(spec: WorkflowSpec) -> list[str]:
    return cancel_mark_path(spec.id, spec.steps[0].name)


def _has_cancel_mark(asset: dict) -> bool:
    return any(is_cancel_mark(o.get("description")) for o in asset.get("assetObservations") or [])


@functools.lru_cache(maxsize=8)
def snapshot_document(marks: int) -> str:
    """The job query, with one aliased cancel-mark lookup per workflow's first step."""
    params = "".join(f", $m{i}: [String!]!" for i in range(marks))
    lookups = "".join(
        f"""
  m{i}: assetOrError(assetKey: {{path: $m{i}}}) {{
    ... on Asset {{ assetObservations(partitions: [$job], limit: 5) {{ description }} }}
  }}"""
        for i in range(marks)
    )
    return f"""
query Job($tags: [ExecutionTag!], $job: String!{params}) {{
  runsOrError(filter: {{tags: $tags}}) {{
    __typename ... on PythonError {{ message }}
    ... on Runs {{ results {{
      {RUN_FIELDS} runConfigYaml
      assetMaterializations {{
        assetKey {{ path }} partition timestamp
        metadataEntries {{ label ... on JsonMetadataEntry {{ jsonString }} }}
      }}
    }} }}
  }}{lookups}
}}"""


def _checkpoint_of(event: dict) -> dict | None:
    for entry in event.get("metadataEntries") or []:
        if entry.get("label") == "checkpoint" and entry.get("jsonString"):
            return json.loads(entry["jsonString"])
    return None


ADD_PARTITION = """
mutation Add($selector: RepositorySelector!, $name: String!, $key: String!) {
  addDynamicPartition(repositorySelector: $selector, partitionsDefName: $name, partitionKey: $key) {
    __typename ... on PythonError { message } ... on UnauthorizedError { message }
    ... on DuplicateDynamicPartitionError { partitionName }
  }
}"""
DELETE_PARTITION = """
mutation Del($selector: RepositorySelector!, $name: String!, $key: String!) {
  deleteDynamicPartitions(repositorySelector: $selector, partitionsDefName: $name,
                          partitionKeys: [$key]) { __typename }
}"""
TERMINATE = """
mutation Stop($runId: String!) { terminateRun(runId: $runId) { __typename } }"""
LAUNCH = """
mutation Launch($executionParams: ExecutionParams!) {
  launchPipelineExecution(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on Error { message }
  }
}"""
REPORT_OBSERVATION = """
mutation Mark($params: ReportRunlessAssetEventsParams!) {
  reportRunlessAssetEvents(eventParams: $params) { __typename }
}"""
USER_JOBS = f"""
query Jobs($tags: [ExecutionTag!], $limit: Int, $cursor: String) {{
  runsOrError(filter: {{tags: $tags}}, limit: $limit, cursor: $cursor) {{
    __typename ... on Runs {{ results {{ {RUN_FIELDS} }} }} ... on PythonError {{ message }}
  }}
}}"""
RUN_LOGS = """
query Logs($runId: ID!, $after: String) {
  logsForRun(runId: $runId, afterCursor: $after) {
    __typename
    ... on EventConnection {
      cursor
      events {
        __typename
        ... on MessageEvent { message timestamp stepKey level }
      }
    }
  }
}"""
