"""Everything the bridge asks of Dagster, over its GraphQL API only.

The bridge never opens the Dagster instance nor imports the workflow definitions,
so it can run as its own service beside dagster-webserver.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import yaml
from dagster_graphql import DagsterGraphQLClient

from bridge_api.errors import ApiError
from wf_assets import tags as t
from wf_assets.job_state import RunView
from wf_assets.specs import WorkflowSpec

LOCATION = "workflows"
REPOSITORY = "__repository__"
JOBS_PARTITIONS = "jobs"
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
        body = response.json()
        if body.get("errors"):
            raise ApiError(502, "orchestrator_error", body["errors"][0].get("message", "error"))
        return body["data"]

    def client(self) -> DagsterGraphQLClient:
        """Dagster's own GraphQL client, for run submission."""
        url = httpx.URL(self.graphql_url)
        return DagsterGraphQLClient(url.host, port_number=url.port, timeout=int(self.timeout))

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

    def submit(
        self,
        job_name: str,
        run_config: dict,
        tags: dict[str, str],
        asset_selection: list[list[str]] | None = None,
    ) -> str:
        """Submit a run through DagsterGraphQLClient; its run id."""
        from dagster_graphql import DagsterGraphQLClientError

        try:
            return self.client().submit_job_execution(
                job_name,
                repository_location_name=LOCATION,
                repository_name=REPOSITORY,
                run_config=run_config,
                tags=tags,
                asset_selection=asset_selection,
            )
        except DagsterGraphQLClientError as exc:
            raise ApiError(
                503,
                "orchestrator_unavailable",
                f"run not submitted: {exc}",
                headers={"Retry-After": "5"},
            ) from exc

    def terminate(self, run_id: str) -> None:
        """Stop a queued or running run."""
        self.query(TERMINATE, {"runId": run_id})

    def mark_cancelled(self, spec: WorkflowSpec, job_id: str, description: str) -> None:
        """Leave the cancel mark: an observation on the first step for the job's partition."""
        self.query(
            REPORT_OBSERVATION,
            {
                "params": {
                    "eventType": "ASSET_OBSERVATION",
                    "assetKey": {"path": [spec.id, spec.steps[0].name]},
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
        """The job's runs with their checkpoints, in one round trip.

        Checkpoints are read from each run's materializations, which needs no asset
        lookup; the cancel mark is read (a second request) only for a job whose latest
        run failed, the one case where it decides the status.
        """
        data = self.query(JOB_SNAPSHOT, {"tags": [{"key": t.JOB_ID, "value": job_id}]})
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
        steps = {(spec.id, step.name): step.name for step in spec.steps}
        for event in sorted(found, key=lambda e: float(e["timestamp"])):
            step = steps.get(tuple(event["assetKey"]["path"]))
            checkpoint = _checkpoint_of(event)
            if step and checkpoint is not None:
                snapshot.checkpoints[step] = checkpoint
        latest = max(runs, key=lambda r: r.created_at)
        if latest.status == "FAILURE":
            snapshot.cancelled = self.is_cancelled(spec, job_id)
        return snapshot

    def is_cancelled(self, spec: WorkflowSpec, job_id: str) -> bool:
        """Whether the job carries the cancel mark (an observation on its first step)."""
        data = self.query(CANCEL_MARK, {"path": [spec.id, spec.steps[0].name], "job": job_id})
        asset = data.get("assetOrError") or {}
        return any(
            "(wf/cancelled)" in (o.get("description") or "")
            for o in asset.get("assetObservations") or []
        )

    def progress(self, run_id: str, after: str | None) -> tuple[list[dict], str | None]:
        """Step starts and `progress N% ...` log lines of a run since cursor `after`."""
        data = self.query(RUN_LOGS, {"runId": run_id, "after": after})
        connection = data["logsForRun"]
        if connection.get("__typename") != "EventConnection":
            return [], after
        return connection["events"], connection["cursor"]


def _repo() -> dict[str, Any]:
    return {"selector": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}}


def _runs(result: dict) -> list[dict]:
    if result.get("__typename") != "Runs":
        raise ApiError(502, "orchestrator_error", result.get("message", "runs unavailable"))
    return result["results"]


def _tag(run: dict, key: str) -> str | None:
    return next((tag["value"] for tag in run["tags"] if tag["key"] == key), None)


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
JOB_SNAPSHOT = f"""
query Job($tags: [ExecutionTag!]) {{
  runsOrError(filter: {{tags: $tags}}) {{
    __typename ... on PythonError {{ message }}
    ... on Runs {{ results {{
      {RUN_FIELDS} runConfigYaml
      assetMaterializations {{
        assetKey {{ path }} partition timestamp
        metadataEntries {{ label ... on JsonMetadataEntry {{ jsonString }} }}
      }}
    }} }}
  }}
}}"""
CANCEL_MARK = """
query Mark($path: [String!]!, $job: String!) {
  assetOrError(assetKey: {path: $path}) {
    ... on Asset { assetObservations(partitions: [$job], limit: 5) { description } }
  }
}"""
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
