"""Everything the bridge asks of Dagster, over its GraphQL API only.

The bridge never opens the Dagster instance nor imports the workflow definitions,
so it can run as its own service beside dagster-webserver. Requests go through the
transport (`transport.py`), their text is in `documents.py`, and what comes back is
made into job snapshots by `snapshots.py`; failures are this client's own errors
(`errors.py`), which the HTTP layer answers.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from bridge_api.dagster_client.documents import (
    ADD_PARTITION,
    DELETE_PARTITION,
    JOB_NAMES_DOCUMENT,
    LAUNCH,
    REPORT_OBSERVATION,
    RUN_LOGS,
    TERMINATE,
    USER_JOBS,
    VERSION,
    snapshot_document,
    snapshots_document,
)
from bridge_api.dagster_client.errors import DagsterError, DagsterUnavailable
from bridge_api.dagster_client.snapshots import (
    JobSnapshot,
    PageLookups,
    asset_events,
    job_snapshot,
    mark_path,
    may_have_newer_runs,
    runs_of,
    tag_of,
)
from bridge_api.dagster_client.transport import GraphQLTransport
from wf_core import tags as t
from wf_core.specs import WorkflowSpec

LOCATION = "workflows"
REPOSITORY = "__repository__"
JOBS_PARTITIONS = "jobs"
log = logging.getLogger(__name__)


class DagsterGateway:
    """A thin GraphQL client for the bridge's needs."""

    def __init__(self, graphql_url: str, timeout: float = 10.0) -> None:
        self.graphql_url = graphql_url
        self.timeout = timeout
        self.transport = GraphQLTransport(graphql_url, timeout)

    def query(self, document: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run one GraphQL document (every request goes through here); DagsterUnavailable
        when Dagster is unreachable or failing, DagsterError when it refuses."""
        return self.transport.query(document, variables)

    def job_names(self) -> set[str]:
        """The jobs the orchestrator's code location defines right now (what it can run)."""
        data = self.query(JOB_NAMES_DOCUMENT, {"selector": _repo()["selector"]})
        repo = data["repositoryOrError"]
        if repo.get("__typename") != "Repository":
            return set()  # the location is loading or failed: nothing runnable yet
        return {job["name"] for job in repo["jobs"]}

    def reachable(self) -> bool:
        """Whether dagster-webserver answers."""
        try:
            return bool(self.query(VERSION).get("version"))
        except DagsterError:
            return False

    def add_partition(self, job_id: str) -> None:
        """Register the job's dynamic partition (before its run is submitted)."""
        data = self.query(ADD_PARTITION, {**_repo(), "name": JOBS_PARTITIONS, "key": job_id})
        result = data["addDynamicPartition"]
        if result["__typename"] != "AddDynamicPartitionSuccess":
            raise DagsterError(result.get("message", "partition refused"))

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
        except DagsterUnavailable as exc:
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
                runs = runs_of(data["runsOrError"])
                if runs:
                    return runs[0]["runId"]
            except DagsterError:
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
                    "assetKey": {"path": mark_path(spec)},
                    "partitionKeys": [job_id],
                    "description": description,
                },
            },
        )

    def jobs_page(
        self, user: str, limit: int, cursor: str | None, specs: Mapping[str, WorkflowSpec]
    ) -> tuple[list[JobSnapshot], str | None]:
        """The user's jobs, newest first (by first run), a page at a time, with snapshots.

        Two or three requests whatever the page's length: the user's runs down to the
        page's oldest first run (they hold every run of the page's jobs made before the
        cursor's), then every checkpoint and cancel mark of the page at once; after a
        cursor, a third for the runs of the jobs not yet completed or cancelled, which
        may have runs newer than the cursor. Jobs of unknown workflows are left out.
        """
        firsts, window = self._user_runs(user, limit, cursor)
        page = firsts[:limit]
        next_cursor = page[-1]["runId"] if len(firsts) > limit else None
        pairs = [(tag_of(r, t.JOB_ID), tag_of(r, t.WORKFLOW)) for r in page]
        listed = [(j, w) for j, w in pairs if j is not None and w is not None and w in specs]
        known: dict[str, list[dict]] = {job_id: [] for job_id, _ in listed}
        for raw in window:
            runs = known.get(tag_of(raw, t.JOB_ID) or "")
            if runs is not None:
                runs.append(raw)
        snapshots = self.page_snapshots(listed, specs, known=known, newest=cursor is None)
        return snapshots, next_cursor

    def _user_runs(self, user: str, limit: int, cursor: str | None) -> tuple[list, list]:
        """The user's first runs after `cursor` (up to limit + 1), and every run of theirs
        from the cursor down to the last of those, newest first.

        The runs are read by their one `wf/user` tag and the first runs (attempt 1, not a
        continuation) kept here: with a second tag and a cursor, SQLite picks a plan
        quadratic in the user's runs (58 s at 10,000 jobs). One request unless retries
        are dense: each further chunk of runs is twice as large.
        """
        tags = [{"key": t.USER, "value": user}]
        firsts: list[dict] = []
        window: list[dict] = []
        size, after = limit + 1 + (limit + 7) // 8, cursor
        while len(firsts) <= limit:
            data = self.query(USER_JOBS, {"tags": tags, "limit": size, "cursor": after})
            runs = runs_of(data["runsOrError"])
            window.extend(runs)
            # A job's first run: attempt 1, and not a continuation of a parked step
            # (continuations carry their attempt's number too).
            firsts.extend(
                r for r in runs if tag_of(r, t.ATTEMPT) == "1" and tag_of(r, t.CONTINUES) is None
            )
            if len(runs) < size:
                break
            size, after = size * 2, runs[-1]["runId"]
        return firsts, window

    def snapshot(self, job_id: str, specs: Mapping[str, WorkflowSpec]) -> JobSnapshot:
        """The job's runs, checkpoints and cancel mark, in one round trip.

        Checkpoints are read from each run's materializations, which needs no asset
        lookup; the cancel mark (an observation on each workflow's first step) is read
        in the same request, since it decides the status whatever the runs say.
        """
        marks = sorted({tuple(mark_path(spec)) for spec in specs.values()})
        variables: dict[str, Any] = {"tags": [{"key": t.JOB_ID, "value": job_id}], "job": job_id}
        variables.update({f"m{i}": list(path) for i, path in enumerate(marks)})
        data = self.query(snapshot_document(len(marks)), variables)
        raw_runs = runs_of(data["runsOrError"])
        events = [
            event
            for raw in raw_runs
            for event in raw.get("assetMaterializations") or []
            if event.get("partition") == job_id
        ]

        def observations(path: list[str]) -> list[dict]:
            asset = data.get(f"m{marks.index(tuple(path))}") or {}
            return asset.get("assetObservations") or []

        return job_snapshot(job_id, raw_runs, events, observations, specs)

    def page_snapshots(
        self,
        pairs: Sequence[tuple[str, str | None]],
        specs: Mapping[str, WorkflowSpec],
        configs: bool = False,
        known: Mapping[str, list[dict]] | None = None,
        newest: bool = False,
    ) -> list[JobSnapshot]:
        """Snapshots of many jobs (job id, workflow id) in one request, in their order.

        Each job's runs by its tag (one aliased field per job); the checkpoints of all
        of them from one lookup per step asset of their workflows, and the cancel marks
        from one per workflow's first step: both filtered by partition, so the request
        is one whatever the number of jobs. Each snapshot is what `snapshot` gives
        (with `configs`, run configs included; the list does without them).

        With `known` (each job's runs already read, newest first), runs are not asked
        for again: when they are the newest (`newest`) they are all there are; else a
        second request reads the runs of the jobs not yet final (completed or
        cancelled), the only ones that may have runs made since.
        """
        if not pairs:
            return []
        if known is not None:
            return self._known_snapshots(pairs, specs, known, newest)
        data, lookups = self._page_query(pairs, specs, jobs=True, configs=configs)
        found = []
        for i, (job_id, _) in enumerate(pairs):
            raw_runs = runs_of(data[f"j{i}"])
            workflow = tag_of(raw_runs[0], t.WORKFLOW) if raw_runs else None
            if workflow in specs and workflow not in lookups.workflows:
                # Its runs name another workflow than its first run did: read it alone.
                found.append(self.snapshot(job_id, specs))
                continue
            found.append(lookups.snapshot(job_id, raw_runs, specs))
        return found

    def _known_snapshots(
        self,
        pairs: Sequence[tuple[str, str | None]],
        specs: Mapping[str, WorkflowSpec],
        known: Mapping[str, list[dict]],
        newest: bool,
    ) -> list[JobSnapshot]:
        _, lookups = self._page_query(pairs, specs, jobs=False)
        found = [lookups.snapshot(job_id, known[job_id], specs) for job_id, _ in pairs]
        if newest:
            return found
        open_jobs = [i for i, snap in enumerate(found) if may_have_newer_runs(snap, specs)]
        if open_jobs:
            document = snapshots_document(len(open_jobs), 0, 0)
            variables: dict[str, Any] = {"jobTag": t.JOB_ID}
            variables.update({f"j{n}": found[i].job_id for n, i in enumerate(open_jobs)})
            data = self.query(document, variables)
            for n, i in enumerate(open_jobs):
                found[i] = lookups.snapshot(found[i].job_id, runs_of(data[f"j{n}"]), specs)
        return found

    def _page_query(
        self,
        pairs: Sequence[tuple[str, str | None]],
        specs: Mapping[str, WorkflowSpec],
        jobs: bool,
        configs: bool = False,
    ) -> tuple[dict[str, Any], PageLookups]:
        """One request: the checkpoints and cancel marks of all `pairs` (and, with
        `jobs`, each job's runs)."""
        job_ids = [job_id for job_id, _ in pairs]
        names = dict.fromkeys(w for _, w in pairs if w is not None and w in specs)
        wanted = [specs[w] for w in names]
        steps = [[spec.id, step.name] for spec in wanted for step in spec.steps]
        marks = [list(p) for p in dict.fromkeys(tuple(mark_path(spec)) for spec in wanted)]
        variables: dict[str, Any] = {"jobs": job_ids} if steps or marks else {}
        if jobs:
            variables["jobTag"] = t.JOB_ID
            variables.update({f"j{i}": job_id for i, job_id in enumerate(job_ids)})
        variables.update({f"k{i}": path for i, path in enumerate(steps)})
        variables.update({f"m{i}": path for i, path in enumerate(marks)})
        count = len(job_ids) if jobs else 0
        data = self.query(snapshots_document(count, len(steps), len(marks), configs), variables)
        lookups = PageLookups(set(names))
        # As `snapshot` orders them (for equal timestamps): by run, each asset's oldest first.
        for i in range(len(steps)):
            for event in reversed(asset_events(data.get(f"k{i}"), "assetMaterializations")):
                key = (event["runId"], event.get("partition"))
                lookups.events.setdefault(key, []).append(event)
        for i, path in enumerate(marks):
            for obs in asset_events(data.get(f"m{i}"), "assetObservations"):
                lookups.marks.setdefault((tuple(path), obs.get("partition")), []).append(obs)
        return data, lookups

    def progress(self, run_id: str, after: str | None) -> tuple[list[dict], str | None]:
        """Step starts and `progress N% ...` log lines of a run since cursor `after`."""
        data = self.query(RUN_LOGS, {"runId": run_id, "after": after})
        connection = data["logsForRun"]
        if connection.get("__typename") != "EventConnection":
            return [], after
        return connection["events"], connection["cursor"]


def _not_started() -> DagsterUnavailable:
    # Details (the mutation, paths, tags) go to the log, never to the client.
    return DagsterUnavailable(
        "The orchestrator did not start the job; nothing was started. Try again shortly."
    )


def _repo() -> dict[str, Any]:
    return {"selector": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}}
