"""Bridge latency: `GET /workflows/execution/<id>` and `GET /workflows/jobs?limit=100` with
10k and 50k jobs, and execute -> complete.

1. A fresh instance (our dagster.yaml; SQLite, or PostgreSQL with --pg-url) is filled with
   finished jobs without executing anything: for each job its "jobs" partition, its run
   record(s) and its step checkpoints (ASSET_MATERIALIZATION events with the `checkpoint`
   metadata the step assets write), in batches through Dagster's own storage tables and
   row helpers (private API, checked against Dagster 1.13.27): about 1,000 jobs/s, where
   instance.add_run + report_runless_asset_event take ~30 ms a job (~27 min for 50,000).
   Most jobs completed; some failed retryably (`pending_retry`), some permanently
   (`failed`), some were retried once and then completed.
2. For each size (default 10,000, then grown to 50,000 in the same instance), a stack
   (dagster-webserver + dagster-daemon) is started on it, the bridge is served over real
   HTTP (werkzeug, threaded, loopback, AUTH_MODE=disabled) and, after --settle seconds and
   a warm-up, GET /workflows/execution/<id> is timed for random jobs: the first GET of a
   job (the bridge also looks up its workflow) and a repeat GET (the workflow is cached:
   one GraphQL request), then the bridge's GraphQL requests sent alone. Every answer's
   status is checked against the job's kind. Then `GET /workflows/jobs?limit=100`
   (--list-samples pages, default 100): the first page one time in ten, else the page
   after a random job's first run (the `next_cursor` the page before it answered); each
   page is checked (jobs, order, statuses, next_cursor) and the bridge's GraphQL
   requests for it counted (two: the page's first runs, then all its snapshots). On
   PostgreSQL the scratch database is ANALYZEd after each fill, as autovacuum would have
   done during gradual growth.
3. On the last size: execute -> SSE `complete` through the bridge, against submit -> SUCCESS
   of the same job submitted directly (stack.launch_job + stack.wait_for_run), provider
   latency 0, jobs one at a time, in turn with a third way (bridge POST, then
   wait_for_run: the bridge's submit path without an SSE stream open). The stream polls
   every 0.25 s while a run is active (--stream-poll, STREAM_ACTIVE_POLL_SECONDS, the default).

With `--read-model` (issue 23), no Dagster at all: the job read model's table (`wf_jobs`)
is seeded directly (rows built with the same projection as the live path, the same mix of
kinds, every job the bench user's), and the bridge, whose GraphQL URL points at a closed
port, answers `GET /workflows/jobs?limit=100` (first page one time in ten, else after a
random job's cursor; each page checked) and `GET /workflows/execution/<id>` from the rows
at 10,000 and 100,000 jobs by default. Targets: list p95 <= 50 ms, status p95 <= 30 ms.

Run: `.venv/bin/python bench/bridge_latency.py [--sizes 10000,50000] [--samples 300]
[--list-samples 100] [--jobs 10] [--pg-url postgresql://postgres@127.0.0.1:5432/postgres]
[--read-model]`.
Exits 1 when a target (execution GET p95 <= 50 ms, jobs list p95 <= 100 ms, overhead
<= 0.5 s) is missed or a GET answers a wrong status or page.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import sqlite3
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log.schema import SqlEventLogStorageTable
from dagster._core.storage.runs.schema import RunsTable, RunTagsTable
from werkzeug.serving import make_server

# Not `from bridge_api import create_app`: an editable install made before bridge_api had
# an __init__.py maps it as a namespace package when the repo root is not on sys.path.
from bridge_api.app import create_app
from bridge_api.dagster_client.documents import snapshot_document
from bridge_api.dagster_client.gateway import DagsterGateway
from runtime.instance import DEQUEUE_INTERVAL_SECONDS, MAX_CONCURRENT_RUNS, prepare_instance
from runtime.stack import DagsterStack, free_port
from wf_core import tags as t
from wf_core.job_ids import JOBS_PARTITIONS_NAME, new_job_id
from wf_core.job_record import JobRecord, RunEntry, project
from wf_core.retry_policy import RetrySettings
from wf_core.run_config import build_run_config
from wf_core.settings import REPO_ROOT
from wf_core.specs import WorkflowSpec, load_specs
from wf_store.migrations import upgrade
from wf_store.schema import jobs as jobs_table
from wf_store.state_db import engine_for

WORKFLOW_ID = "img-edit-to-video"
SAMPLE = REPO_ROOT / "samples" / "sample.jpg"
USER = "local-dev"
BATCH = 1000
JOB_INTERVAL_SECONDS = 30.0  # synthetic jobs were created this far apart, oldest first
STREAM_POLL_SECONDS = 0.25  # the bridge's default while a run is active
WARMUP_JOBS = 50  # GETs (and GraphQL requests) before the timed ones, on other jobs
P95_TARGET_MS = 50.0
LIST_LIMIT = 100  # GET /workflows/jobs?limit=100
LIST_P95_TARGET_MS = 100.0
LIST_WARMUP = 5
BEFORE_EVERY = 10  # one page in ten is also read as the old route did, for comparison
OVERHEAD_TARGET_S = 0.5
# What the population holds, and the status the bridge must report for each kind.
# The failed runs carry `wf/retry_state=done`, so that the live retry sensor leaves them
# alone (a real retryable failure would be retried within seconds); the job-state rules
# still report a retryable one as pending_retry.
KINDS = [("completed", 0.90), ("retried", 0.03), ("pending_retry", 0.05), ("failed", 0.02)]
EXPECTED_STATUS = {
    "completed": "completed",
    "retried": "completed",
    "pending_retry": "pending_retry",
    "failed": "failed",
}


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile of `values`."""
    ordered = sorted(values)
    rank = max(1, round(pct / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def iso(epoch: float) -> str:
    """Epoch seconds as the ISO-8601 UTC string the step assets write."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


# ---------------------------------------------------------------- population


@dataclass
class RunPlan:
    """One synthetic run record."""

    run: dg.DagsterRun
    created: float
    started: float
    ended: float


class Populator:
    """Writes finished jobs straight into an instance's run and event log storage, in batches."""

    def __init__(self, instance: dg.DagsterInstance, spec: WorkflowSpec, seed: int = 7) -> None:
        self.instance = instance
        self.spec = spec
        self.rng = random.Random(seed)
        self.jobs: dict[str, str] = {}  # job id -> kind
        self.first_runs: dict[str, str] = {}  # job id -> its first run's id (a list cursor)
        self.run_config = build_run_config(spec, None, str(SAMPLE))
        self.last_event: dict[str, EventLogEntry] = {}
        # Dagster inspects the schema for this on every run it inserts: ask once.
        storage = instance.run_storage
        has_backfill_id = storage.has_backfill_id_column()
        storage.has_backfill_id_column = lambda: has_backfill_id  # type: ignore[method-assign]

    def grow(self, total: int, oldest: float) -> float:
        """Add jobs until there are `total`; the seconds it took."""
        began = time.perf_counter()
        index = len(self.jobs)
        while index < total:
            count = min(BATCH, total - index)
            created = [oldest + (index + i) * JOB_INTERVAL_SECONDS for i in range(count)]
            self._write_batch(created)
            index += count
        self._update_asset_keys()
        return time.perf_counter() - began

    def _kind(self) -> str:
        draw, acc = self.rng.random(), 0.0
        for kind, weight in KINDS:
            acc += weight
            if draw < acc:
                return kind
        return KINDS[0][0]

    def _write_batch(self, created: list[float]) -> None:
        runs: list[RunPlan] = []
        events: list[EventLogEntry] = []
        job_ids = []
        for t0 in created:
            job_id = new_job_id(t0)
            kind = self._kind()
            job_runs, job_events = self._job(job_id, kind, t0)
            runs.extend(job_runs)
            events.extend(job_events)
            job_ids.append(job_id)
            self.jobs[job_id] = kind
            self.first_runs[job_id] = job_runs[0].run.run_id
        self.instance.add_dynamic_partitions(JOBS_PARTITIONS_NAME, job_ids)
        self._insert_runs(runs)
        self._insert_events(events)

    def _job(self, job_id: str, kind: str, t0: float) -> tuple[list[RunPlan], list[EventLogEntry]]:
        steps = [s.name for s in self.spec.steps]
        # Per-step windows (seconds after creation): queue + launch, then the three steps.
        window = {steps[0]: (1.0, 1.3), steps[1]: (1.3, 9.0), steps[2]: (9.0, 40.0)}
        run_id = str(uuid.uuid4())
        if kind == "completed":
            run = self._run(run_id, job_id, 1, dg.DagsterRunStatus.SUCCESS, t0, t0 + 40.5)
            return [run], [self._checkpoint(job_id, run_id, s, t0, *window[s]) for s in steps]
        if kind == "failed":
            failure = self._failure("image_edit", "content_rejected", False, t0 + 5.0)
            run = self._run(run_id, job_id, 1, dg.DagsterRunStatus.FAILURE, t0, t0 + 5.2, failure)
            return [run], [self._checkpoint(job_id, run_id, steps[0], t0, *window[steps[0]])]
        failure = self._failure(steps[2], "timeout", True, t0 + 25.0)
        first = self._run(run_id, job_id, 1, dg.DagsterRunStatus.FAILURE, t0, t0 + 25.2, failure)
        events = [self._checkpoint(job_id, run_id, s, t0, *window[s]) for s in steps[:2]]
        if kind == "pending_retry":
            return [first], events
        retry_id, t1 = str(uuid.uuid4()), t0 + 60.0
        retry = self._run(
            retry_id, job_id, 2, dg.DagsterRunStatus.SUCCESS, t1, t1 + 31.0, parent=run_id
        )
        events.append(self._checkpoint(job_id, retry_id, steps[2], t1 - 9.0, 9.5, 40.0))
        return [first, retry], events

    def _failure(self, step: str, error_type: str, retryable: bool, at: float) -> dict[str, str]:
        model = "minimax/video-01" if step == "video_generation" else "nano-banana"
        return {
            t.ERROR_TYPE: error_type,
            t.RETRYABLE: "true" if retryable else "false",
            t.FAILED_STEP: step,
            t.FAILED_AT: iso(at),
            t.ERROR_MESSAGE: f"{error_type} from {model} (synthetic)",
            t.PROVIDER: "local",
            t.MODEL: model,
            t.RETRY_STATE: t.RETRY_DONE,
        }

    def _run(
        self,
        run_id: str,
        job_id: str,
        attempt: int,
        status: dg.DagsterRunStatus,
        created: float,
        ended: float,
        extra: dict[str, str] | None = None,
        parent: str | None = None,
    ) -> RunPlan:
        tags = t.job_tags(self.spec.id, job_id, USER, "bench", attempt, parent)
        run = dg.DagsterRun(
            job_name=self.spec.job_name,
            run_id=run_id,
            status=status,
            run_config=self.run_config,
            tags={**tags, **(extra or {})},
        )
        return RunPlan(run, created, created + 0.9, ended)

    def _checkpoint(
        self, job_id: str, run_id: str, step: str, t0: float, start: float, end: float
    ) -> EventLogEntry:
        index = self.spec.step_index(step)
        step_spec = self.spec.step(step)
        base = f"http://127.0.0.1:8000/media/{job_id}/{step}"
        outputs = {
            "upload": {
                "image_url": f"{base}.jpg",
                "public_id": f"{job_id}/upload",
                "format": "jpg",
            },
            "image_edit": {
                "edited_image_url": f"{base}.png",
                "public_id": f"{job_id}/image_edit",
                "format": "png",
                "model_used": "nano-banana",
                "prompt": self.spec.default_prompts.get("image_edit"),
            },
            "video_generation": {
                "video_url": f"{base}.mp4",
                "public_id": f"{job_id}/video_generation",
                "format": "mp4",
                "model_used": "minimax/video-01",
            },
        }
        checkpoint = {
            "workflow_id": self.spec.id,
            "job_id": job_id,
            "step_name": step,
            "step_index": index,
            "step_type": step_spec.type,
            "kind": step_spec.kind,
            "output": outputs[step],
            "run_id": run_id,
            "started_at": iso(t0 + start),
            "completed_at": iso(t0 + end),
        }
        materialization = dg.AssetMaterialization(
            asset_key=[self.spec.id, step],
            partition=job_id,
            metadata={
                "checkpoint": dg.MetadataValue.json(checkpoint),
                "started_at": checkpoint["started_at"],
                "completed_at": checkpoint["completed_at"],
            },
        )
        op = self.spec.op_name(step)
        event = DagsterEvent(
            event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value,
            job_name=self.spec.job_name,
            step_key=op,
            event_specific_data=StepMaterializationData(materialization),
        )
        return EventLogEntry(
            error_info=None,
            level=logging.INFO,
            user_message="",
            run_id=run_id,
            timestamp=t0 + end,
            step_key=op,
            job_name=self.spec.job_name,
            dagster_event=event,
        )

    def _insert_runs(self, plans: list[RunPlan]) -> None:
        storage = self.instance.run_storage
        rows, tag_rows = [], []
        for plan in plans:
            values = storage._get_run_insertion_values(
                plan.run, datetime.fromtimestamp(plan.created, UTC)
            )
            values.update(
                update_timestamp=datetime.fromtimestamp(plan.ended, UTC),
                start_time=plan.started,
                end_time=plan.ended,
            )
            rows.append(values)
            tag_rows.extend(
                {"run_id": plan.run.run_id, "key": key, "value": value}
                for key, value in plan.run.tags_for_storage().items()
            )
        with storage.connect() as conn:
            conn.execute(RunsTable.insert(), rows)
            conn.execute(RunTagsTable.insert(), tag_rows)

    def _insert_events(self, events: list[EventLogEntry]) -> None:
        # The cross-run (index) table that asset queries read, and on SQLite each run's
        # own shard too: the bridge reads a job's checkpoints from its runs' events.
        storage = self.instance.event_log_storage
        rows = [storage._event_to_row(e) for e in events]
        with storage.index_transaction() as conn:
            conn.execute(SqlEventLogStorageTable.insert(), rows)
        if hasattr(storage, "path_for_shard"):
            self._insert_run_shards(storage, events, rows)
        for event in events:
            self.last_event[event.dagster_event.asset_key.to_string()] = event

    def _insert_run_shards(self, storage, events: list[EventLogEntry], rows: list[dict]) -> None:
        """Per-run SQLite shards, copied from one empty shard (creating each is slow)."""
        template = storage.path_for_shard("__bench_template__")
        if not os.path.exists(template):
            with storage.run_connection("__bench_template__"):
                pass
        by_run: dict[str, list[dict]] = {}
        for event, row in zip(events, rows, strict=True):
            by_run.setdefault(event.run_id, []).append(row)
        for run_id, run_rows in by_run.items():
            path = storage.path_for_shard(run_id)
            shutil.copyfile(template, path)
            columns = list(run_rows[0])
            insert = (
                f"INSERT INTO event_logs ({', '.join(columns)}) "
                f"VALUES ({', '.join('?' * len(columns))})"
            )
            with sqlite3.connect(path) as db:
                db.executemany(insert, [_sqlite_row(row, columns) for row in run_rows])

    def _update_asset_keys(self) -> None:
        """Point each step's asset_keys row at its latest materialization, as store_event does."""
        storage = self.instance.event_log_storage
        with storage.index_transaction() as conn:
            for key, event in self.last_event.items():
                event_id = conn.execute(
                    SqlEventLogStorageTable.select()
                    .with_only_columns(SqlEventLogStorageTable.c.id)
                    .where(SqlEventLogStorageTable.c.asset_key == key)
                    .order_by(SqlEventLogStorageTable.c.id.desc())
                    .limit(1)
                ).scalar_one()
                storage._store_asset_event(conn, event, event_id)


def _sqlite_row(row: dict, columns: list[str]) -> tuple:
    """Values as SQLAlchemy stores them in SQLite (datetimes as text)."""
    return tuple(
        value.strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(value, datetime) else value
        for value in (row[c] for c in columns)
    )


def check_population(instance: dg.DagsterInstance, populator: Populator) -> None:
    """Dagster's own API reads the synthetic data back as a step would have written it."""
    job_id, kind = next((j, k) for j, k in populator.jobs.items() if k == "completed")
    spec = populator.spec
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=dg.AssetKey([spec.id, spec.steps[-1].name]), asset_partitions=[job_id]
        ),
        limit=1,
    ).records
    assert records, f"no checkpoint read back for {job_id}"
    entry = records[0].asset_materialization.metadata["checkpoint"]
    assert entry.value["job_id"] == job_id
    runs = instance.get_run_records(dg.RunsFilter(tags={t.JOB_ID: job_id}))
    assert len(runs) == 1 and runs[0].dagster_run.status == dg.DagsterRunStatus.SUCCESS
    assert instance.has_dynamic_partition(JOBS_PARTITIONS_NAME, job_id)


# ---------------------------------------------------------------- bridge over HTTP


@contextmanager
def serve_bridge(app) -> Iterator[str]:
    """The app on a free loopback port in a thread (werkzeug, threaded); its base URL."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


class CountingGateway(DagsterGateway):
    """The bridge's gateway, counting the GraphQL requests it sends and timing each kind."""

    requests = 0

    def __init__(self, graphql_url: str) -> None:
        super().__init__(graphql_url)
        self.ms: dict[str, list[float]] = {}

    def query(self, document: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        self.requests += 1
        began = time.perf_counter()
        try:
            return super().query(document, variables)
        finally:
            self.ms.setdefault(request_kind(document), []).append(
                (time.perf_counter() - began) * 1000
            )


def request_kind(document: str) -> str:
    """What one of the bridge's GraphQL documents asks for, for the report."""
    if "query Jobs(" in document:
        return "the user's runs down to the page's oldest"
    if "query PageSnapshots" in document:
        if "assetOrError" in document:
            return "the page's checkpoints and cancel marks"
        return "the runs of the page's jobs not yet final"
    return document.split("(")[0].split("{")[0].strip() or "other"


def bridge_app(stack: DagsterStack, media: Path, stream_poll: float):
    """The bridge against `stack`, auth disabled (every request is user local-dev)."""
    app = create_app(
        {
            "DAGSTER_GRAPHQL_URL": stack.graphql_url,
            "AUTH_MODE": "disabled",
            "MEDIA_DIR": str(media),
            "UPLOAD_DIR": str(media / "incoming"),
            "STREAM_ACTIVE_POLL_SECONDS": stream_poll,
            "RATELIMIT_EXECUTE": "10000 per minute",
        }
    )
    app.extensions["dagster"] = CountingGateway(stack.graphql_url)
    return app


def timed(fn, *args) -> tuple[float, Any]:
    """(milliseconds, result) of one call."""
    began = time.perf_counter()
    result = fn(*args)
    return (time.perf_counter() - began) * 1000, result


@dataclass
class GetTimings:
    """Milliseconds per request kind, and status mismatches."""

    first: list[float]
    repeat: list[float]
    graphql: dict[str, list[float]]
    mismatches: list[str]


def graphql_documents(spec: WorkflowSpec) -> dict[str, str]:
    """The bridge's GraphQL requests for one GET, to time alone."""
    return {
        # Runs, checkpoints and the cancel mark of the job's workflow, in one request.
        "snapshot (every GET's request)": snapshot_document(1),
        "{ version } (the webserver's floor)": "{ version }",
    }


def measure_gets(
    base: str,
    stack: DagsterStack,
    spec: WorkflowSpec,
    jobs: dict[str, str],
    samples: int,
    seed: int,
) -> GetTimings:
    """Time GETs of random jobs (first and repeat), then the same GraphQL requests alone."""
    rng = random.Random(seed)
    picked = rng.sample(sorted(jobs), samples + WARMUP_JOBS)
    warmup, ids = picked[:WARMUP_JOBS], picked[WARMUP_JOBS:]
    documents = graphql_documents(spec)
    timings = GetTimings([], [], {name: [] for name in documents}, [])
    with httpx.Client(base_url=base, timeout=30) as http, httpx.Client(timeout=30) as gql:

        def get(job_id: str) -> httpx.Response:
            return http.get(f"/workflows/execution/{job_id}")

        def post(document: str, job_id: str) -> dict:
            variables: dict = {}
            if document != "{ version }":
                variables = {
                    "tags": [{"key": t.JOB_ID, "value": job_id}],
                    "job": job_id,
                    "m0": [spec.id, spec.steps[0].name],
                }
            response = gql.post(stack.graphql_url, json={"query": document, "variables": variables})
            body = response.json()
            if response.status_code != 200 or body.get("errors"):
                raise RuntimeError(f"GraphQL failed: {response.status_code} {body}")
            return body["data"]

        for job_id in warmup:
            get(job_id)
            get(job_id)
            for document in documents.values():
                post(document, job_id)
        for job_id in ids:
            for bucket in (timings.first, timings.repeat):
                ms, response = timed(get, job_id)
                bucket.append(ms)
                status = response.json().get("status") if response.status_code == 200 else None
                if status != EXPECTED_STATUS[jobs[job_id]]:
                    timings.mismatches.append(
                        f"{job_id} ({jobs[job_id]}): HTTP {response.status_code} {status}"
                    )
            for name, document in documents.items():
                ms, _ = timed(post, document, job_id)
                timings.graphql[name].append(ms)
    return timings


def stats_ms(values: list[float]) -> str:
    """p50/p95/p99 in ms."""
    return (
        f"{percentile(values, 50):7.1f} {percentile(values, 95):7.1f} {percentile(values, 99):7.1f}"
    )


def report_gets(size: int, timings: GetTimings) -> None:
    """Print one size's GET figures."""
    print(f"\n{size:,} jobs: {len(timings.first)} random jobs, ms over loopback HTTP")
    print(f"  {'request':48} {'p50':>7} {'p95':>7} {'p99':>7}")
    print(f"  {'GET execution, first for the job':48} {stats_ms(timings.first)}")
    print(f"  {'GET execution, repeat':48} {stats_ms(timings.repeat)}")
    print("  the same GraphQL requests sent alone to dagster-webserver:")
    for name, values in timings.graphql.items():
        print(f"    {name:46} {stats_ms(values)}")
    snapshot = next(iter(timings.graphql.values()))
    overhead = percentile(timings.repeat, 50) - percentile(snapshot, 50)
    print(f"  bridge's own share of a repeat GET (p50 - snapshot p50): {overhead:.1f} ms")
    if timings.mismatches:
        print(
            f"  WRONG STATUS for {len(timings.mismatches)} requests, e.g. {timings.mismatches[0]}"
        )
    else:
        print(f"  every GET answered 200 with the job's expected status ({len(timings.first) * 2})")


@dataclass
class ListTimings:
    """GET /workflows/jobs?limit=100: milliseconds, GraphQL requests per page, mismatches."""

    ms: list[float]
    requests: list[int]
    mismatches: list[str]
    graphql: dict[str, list[float]]  # the bridge's requests for the pages, by kind
    before: list[float]  # the same pages' snapshots one request per job (the old route)


def measure_list(base: str, app, populator: Populator, samples: int, seed: int) -> ListTimings:
    """Time `samples` pages of 100 jobs: the first page, and pages after random cursors.

    A cursor is a job's first run (what `next_cursor` holds); the page after it holds the
    next older jobs. Every page is checked: 100 jobs (fewer only at the end), newest
    first, each with the status its kind must show, and the cursor of the next page.
    One page in ten is also read as the route did before (one snapshot request per
    job, its page query left out), in the same conditions, for comparison.
    """
    rng = random.Random(seed)
    jobs = list(populator.jobs)  # oldest first, as their first runs were written
    newest_first = jobs[::-1]
    position = {job_id: i for i, job_id in enumerate(newest_first)}
    gateway: CountingGateway = app.extensions["dagster"]
    timings = ListTimings([], [], [], {}, [])
    # Cursors spread over the whole history; one sample in ten is the first page.
    picks: list[str | None] = [
        None if rng.random() < 0.1 else rng.choice(jobs) for _ in range(samples + LIST_WARMUP)
    ]
    with httpx.Client(base_url=base, timeout=120) as http:
        for number, after in enumerate(picks):
            query = f"/workflows/jobs?limit={LIST_LIMIT}"
            if after is not None:
                query += f"&cursor={populator.first_runs[after]}"
            sent = gateway.requests
            gateway.ms.clear()
            ms, response = timed(http.get, query)
            if number < LIST_WARMUP:
                continue
            for kind, values in gateway.ms.items():
                timings.graphql.setdefault(kind, []).extend(values)
            timings.ms.append(ms)
            timings.requests.append(gateway.requests - sent)
            start = 0 if after is None else position[after] + 1
            expected = newest_first[start : start + LIST_LIMIT]
            problem = _list_problem(response, expected, populator, start)
            if problem:
                timings.mismatches.append(f"cursor after {after}: {problem}")
            if number % BEFORE_EVERY == 0:
                # The route before: one snapshot request per job of the same page.
                specs = app.extensions["specs"].all()
                before_ms, _ = timed(snapshots_one_by_one, gateway, expected, specs)
                timings.before.append(before_ms)
    return timings


def snapshots_one_by_one(gateway: DagsterGateway, job_ids: list[str], specs) -> list:
    """What the route did before: one snapshot request per job."""
    return [gateway.snapshot(job_id, specs) for job_id in job_ids]


def _list_problem(
    response: httpx.Response, expected: list[str], populator: Populator, start: int
) -> str | None:
    """What is wrong with one page's answer, or None."""
    if response.status_code != 200:
        return f"HTTP {response.status_code} {response.text[:200]}"
    body = response.json()
    got = [job["job_id"] for job in body["jobs"]]
    if got != expected:
        return f"{len(got)} jobs, not the {len(expected)} expected"
    for job in body["jobs"]:
        if job["status"] != EXPECTED_STATUS[populator.jobs[job["job_id"]]]:
            return f"{job['job_id']} ({populator.jobs[job['job_id']]}): {job['status']}"
    more = start + LIST_LIMIT < len(populator.jobs)
    cursor = populator.first_runs[expected[-1]] if more and expected else None
    if body["next_cursor"] != cursor:
        return f"next_cursor {body['next_cursor']}, not {cursor}"
    return None


def report_list(size: int, timings: ListTimings) -> None:
    """Print one size's jobs-list figures."""
    print(
        f"  GET /workflows/jobs?limit={LIST_LIMIT}, {len(timings.ms)} pages "
        f"(first page and random cursors)      {stats_ms(timings.ms)}"
    )
    counts = ", ".join(str(c) for c in sorted(set(timings.requests)))
    print(f"    GraphQL requests per page: {counts}; each kind, as the bridge waited for it:")
    for kind, values in timings.graphql.items():
        print(f"      {kind:44} {stats_ms(values)}  ({len(values)} sent)")
    print(
        f"    before: the same pages' snapshots, one request per job "
        f"({len(timings.before)} pages) {stats_ms(timings.before)}"
    )
    if timings.mismatches:
        wrong = len(timings.mismatches)
        print(f"    WRONG PAGE for {wrong} requests, e.g. {timings.mismatches[0]}")
    else:
        print("    every page answered 200 with the expected jobs, statuses and next_cursor")


# ---------------------------------------------------------------- end to end


def read_until_complete(http: httpx.Client, job_id: str, timeout: float = 120) -> dict[str, float]:
    """Follow the job's SSE stream to `complete`; perf_counter times of first event and complete."""
    seen: dict[str, float] = {}
    deadline = time.perf_counter() + timeout
    with http.stream("GET", f"/jobs/{job_id}/stream", timeout=timeout) as response:
        if response.status_code != 200:
            raise RuntimeError(f"stream {job_id}: HTTP {response.status_code}")
        event = None
        for line in response.iter_lines():
            if time.perf_counter() > deadline:
                raise TimeoutError(f"no complete event for {job_id} after {timeout:.0f} s")
            if line.startswith("event: "):
                event = line[len("event: ") :]
                seen.setdefault("first", time.perf_counter())
            elif line.startswith("data: ") and event == "error":
                data = json.loads(line[len("data: ") :])
                if not data.get("retryable"):
                    raise RuntimeError(f"job {job_id} failed: {data}")
            elif line.startswith("data: ") and event == "complete":
                seen["complete"] = time.perf_counter()
                return seen
    raise RuntimeError(f"stream of {job_id} ended without complete")


@dataclass
class E2E:
    """One job through the bridge: seconds from the POST."""

    total: float
    post: float
    first_event: float
    run_id: str


def execute(http: httpx.Client) -> dict[str, Any]:
    """POST /workflows/execute the sample image; the 202 body."""
    response = http.post(
        "/workflows/execute",
        data={"workflow_id": WORKFLOW_ID},
        files={"file": ("sample.jpg", SAMPLE.read_bytes(), "image/jpeg")},
    )
    if response.status_code != 202:
        raise RuntimeError(f"execute: HTTP {response.status_code} {response.text}")
    return response.json()


def bridge_job(http: httpx.Client) -> E2E:
    """POST /workflows/execute the sample, then follow the stream to `complete`."""
    began = time.perf_counter()
    body = execute(http)
    posted = time.perf_counter()
    seen = read_until_complete(http, body["job_id"])
    return E2E(
        seen["complete"] - began, posted - began, seen["first"] - began, body["execution_id"]
    )


def direct_job(stack: DagsterStack, spec: WorkflowSpec) -> tuple[float, str]:
    """stack.launch_job + stack.wait_for_run (what bench/run_overhead.py measures)."""
    began = time.perf_counter()
    run_id = stack.launch_job(spec, new_job_id(), SAMPLE, launched_by="bench")
    status = stack.wait_for_run(run_id, timeout=120, poll=0.1)
    if status != dg.DagsterRunStatus.SUCCESS:
        raise RuntimeError(f"direct run {run_id} ended {status.value}")
    return time.perf_counter() - began, run_id


def bridge_job_no_stream(http: httpx.Client, stack: DagsterStack) -> tuple[float, str]:
    """POST /workflows/execute, then stack.wait_for_run: the bridge's submit path, no SSE."""
    began = time.perf_counter()
    run_id = execute(http)["execution_id"]
    status = stack.wait_for_run(run_id, timeout=120, poll=0.1)
    if status != dg.DagsterRunStatus.SUCCESS:
        raise RuntimeError(f"bridge run {run_id} ended {status.value}")
    return time.perf_counter() - began, run_id


def server_seconds(stack: DagsterStack, run_id: str) -> float:
    """Run creation (submit) -> RUN_SUCCESS, from Dagster's own timestamps."""
    record = stack.instance.get_run_record_by_id(run_id)
    stats = stack.instance.get_run_stats(run_id)
    return stats.end_time - record.create_timestamp.timestamp()


def measure_e2e(
    base: str, stack: DagsterStack, spec: WorkflowSpec, count: int, seed: int, stream_poll: float
) -> tuple[float, float]:
    """Alternate bridge, bridge-without-stream and direct jobs; print; the overheads in seconds.

    Each job waits a random fraction of the daemon's dequeue interval first: a queued run
    starts at the next dequeue tick, and strictly back-to-back jobs would otherwise lock
    onto the tick with a phase that differs between the two paths.
    """
    rng = random.Random(seed)
    bridge: list[E2E] = []
    direct: list[tuple[float, str]] = []
    quiet: list[tuple[float, str]] = []
    with httpx.Client(base_url=base, timeout=60) as http:
        bridge_job(http)
        bridge_job_no_stream(http, stack)
        direct_job(stack, spec)
        for _ in range(count):
            time.sleep(rng.uniform(0, DEQUEUE_INTERVAL_SECONDS))
            bridge.append(bridge_job(http))
            time.sleep(rng.uniform(0, DEQUEUE_INTERVAL_SECONDS))
            quiet.append(bridge_job_no_stream(http, stack))
            time.sleep(rng.uniform(0, DEQUEUE_INTERVAL_SECONDS))
            direct.append(direct_job(stack, spec))
    med = statistics.median
    b_total = [job.total for job in bridge]
    b_server = [server_seconds(stack, job.run_id) for job in bridge]
    b_rest = [total - run for total, run in zip(b_total, b_server, strict=True)]
    d_total = [seconds for seconds, _ in direct]
    d_server = [server_seconds(stack, run_id) for _, run_id in direct]
    d_rest = [total - run for total, run in zip(d_total, d_server, strict=True)]
    q_total = [seconds for seconds, _ in quiet]
    q_server = [server_seconds(stack, run_id) for _, run_id in quiet]
    rows = [
        ("bridge: POST execute -> SSE complete received", b_total),
        ("  POST /workflows/execute answered (202)", [job.post for job in bridge]),
        ("  POST -> first SSE event", [job.first_event for job in bridge]),
        ("  run created -> RUN_SUCCESS (Dagster's timestamps)", b_server),
        ("  the rest, outside the run (submit, SSE poll, HTTP)", b_rest),
        ("direct: launch_job -> wait_for_run SUCCESS (poll 0.1 s)", d_total),
        ("  run created -> RUN_SUCCESS (Dagster's timestamps)", d_server),
        ("  the rest, outside the run (partition, submit, poll)", d_rest),
        ("bridge POST, then wait_for_run (no SSE stream open)", q_total),
        ("  run created -> RUN_SUCCESS (Dagster's timestamps)", q_server),
    ]
    print(f"\nEnd to end: {count} jobs each of 3 ways, one at a time, in turn; provider latency 0")
    print(f"  {'phase':58} {'median':>8} {'p95':>8}")
    for name, values in rows:
        print(f"  {name:58} {med(values):7.2f}s {percentile(values, 95):7.2f}s")
    overhead = med(b_total) - med(d_total)
    outside = med(b_rest) - med(d_rest)
    print(f"  bridge overhead, median total minus median total: {overhead:+.2f} s")
    print(f"  bridge overhead outside the run (median rest minus median rest): {outside:+.2f} s")
    print(
        f"  (the stream polls every {stream_poll} s while a run is active, the bridge's default; "
        f"queued runs start at the daemon's next dequeue, every {DEQUEUE_INTERVAL_SECONDS} s)"
    )
    return overhead, outside


# ---------------------------------------------------------------- main


@contextmanager
def scratch_database(server_url: str | None) -> Iterator[str | None]:
    """A fresh PostgreSQL database on the server of `server_url`, dropped afterwards."""
    if not server_url:
        yield None
        return
    import psycopg2

    name = f"wf_bench_{uuid.uuid4().hex[:12]}"

    def admin(sql: str) -> None:
        conn = psycopg2.connect(server_url)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql)
        conn.close()

    admin(f'CREATE DATABASE "{name}"')
    try:
        yield f"{server_url.rsplit('/', 1)[0]}/{name}"
    finally:
        admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def analyze(db_url: str) -> None:
    """ANALYZE the scratch database, as autovacuum would have done after gradual growth."""
    import psycopg2

    conn = psycopg2.connect(db_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("ANALYZE")
    conn.close()


# ---------------------------------------------------------------- the read model (issue 23)

READ_MODEL_LIST_TARGET_MS = 50.0
READ_MODEL_STATUS_TARGET_MS = 30.0


def seeded_record(spec: WorkflowSpec, job_id: str, kind: str, created: float) -> JobRecord:
    """A finished job's record as the live path would have folded it (runs, checkpoints)."""
    steps = [step.name for step in spec.steps]
    record = JobRecord(job_id)

    def run(attempt: int, status: str, done: list[str], at: float, **extra: str) -> None:
        nonlocal record
        run_id = str(uuid.uuid4())
        tags = {**t.job_tags(spec.id, job_id, USER, "bridge", attempt), **extra}
        record = record.with_run(RunEntry(run_id, status, tags, at, at + 0.5, at + 9, at + 9))
        for n, step in enumerate(done):
            index = spec.step_index(step)
            raw = {
                "workflow_id": spec.id,
                "job_id": job_id,
                "step_name": step,
                "step_index": index,
                "step_type": spec.steps[index].type,
                "kind": spec.steps[index].kind,
                "output": {"url": f"https://media.example/{job_id}/{step}.png"},
                "run_id": run_id,
                "started_at": iso(at + 1 + n),
                "completed_at": iso(at + 2 + n),
            }
            record = record.with_checkpoint((spec.id, step), at + 2 + n, run_id, raw)

    failure = {
        t.FAILED_AT: iso(created + 9),
        t.RETRY_STATE: t.RETRY_DONE,
        t.FAILED_STEP: "video_generation" if kind == "pending_retry" else "image_edit",
    }
    if kind == "completed":
        run(1, "SUCCESS", steps, created)
    elif kind == "retried":
        retry = {t.ERROR_TYPE: "rate_limit", t.RETRYABLE: "true", t.ERROR_MESSAGE: "429"}
        run(1, "FAILURE", steps[:1], created, **failure, **retry)
        run(2, "SUCCESS", steps[1:], created + 12)
    elif kind == "pending_retry":
        timeout = {t.ERROR_TYPE: "timeout", t.RETRYABLE: "true", t.ERROR_MESSAGE: "timed out"}
        run(1, "FAILURE", steps[:2], created, **failure, **timeout)
    else:
        rejected = {t.ERROR_TYPE: "content_rejected", t.RETRYABLE: "false"}
        run(1, "FAILURE", steps[:1], created, **failure, **rejected, **{t.ERROR_MESSAGE: "NSFW"})
    return record


def seed_rows(engine, spec: WorkflowSpec, count: int, start: int, oldest: float, rng) -> list:
    """Insert `count` rows into wf_jobs (numbers start.. start+count); their (job id, kind,
    first run id), oldest first."""
    settings = RetrySettings()
    seeded, batch = [], []
    kinds, weights = zip(*KINDS, strict=True)
    for number in range(start, start + count):
        created = oldest + number * JOB_INTERVAL_SECONDS
        job_id = new_job_id(created)
        kind = rng.choices(kinds, weights)[0]
        record = seeded_record(spec, job_id, kind, created)
        columns = project(record, spec, settings)
        batch.append({**columns, "version": 1})
        seeded.append((job_id, kind, columns["first_run_id"]))
        if len(batch) == 5000:
            with engine.begin() as conn:
                conn.execute(jobs_table.insert(), batch)
            batch = []
    if batch:
        with engine.begin() as conn:
            conn.execute(jobs_table.insert(), batch)
    return seeded


def measure_read_model(base: str, seeded: list, samples: int, list_samples: int, rng) -> dict:
    """Timed GETs of the list (checked pages) and of single jobs (checked statuses)."""
    newest_first = list(reversed(seeded))
    lists, gets, mismatches = [], [], 0
    with httpx.Client(base_url=base, timeout=30) as http:
        for _ in range(LIST_WARMUP):
            http.get(f"/workflows/jobs?limit={LIST_LIMIT}")
        for n in range(list_samples):
            after = None if n % BEFORE_EVERY == 0 else rng.randrange(len(newest_first) - 1)
            query = f"/workflows/jobs?limit={LIST_LIMIT}"
            if after is not None:
                query += f"&cursor={newest_first[after][2]}"
            ms, answer = timed(http.get, query)
            lists.append(ms)
            start = 0 if after is None else after + 1
            want = [job_id for job_id, _, _ in newest_first[start : start + LIST_LIMIT]]
            got = [job["job_id"] for job in answer.json()["jobs"]] if answer.is_success else []
            mismatches += got != want
        for job_id, kind, _ in rng.sample(seeded, min(samples, len(seeded))):
            ms, answer = timed(http.get, f"/workflows/execution/{job_id}")
            gets.append(ms)
            ok = answer.is_success and answer.json()["status"] == EXPECTED_STATUS[kind]
            mismatches += not ok
    return {"list": lists, "gets": gets, "mismatches": mismatches}


def read_model_main(args) -> int:
    """The read-model figures: rows seeded into wf_jobs, the bridge answering from them."""
    sizes = [int(s) for s in (args.sizes or "10000,100000").split(",")]
    for noisy in ("httpx", "bridge_api.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    spec = load_specs()[WORKFLOW_ID]
    rng = random.Random(args.seed)
    ok = True
    with (
        tempfile.TemporaryDirectory(prefix="wf-read-model-bench-") as tmp,
        scratch_database(args.pg_url) as db_url,
    ):
        url = db_url or f"sqlite:///{Path(tmp) / 'state.db'}"
        engine = engine_for(url)
        upgrade(engine)
        storage = "PostgreSQL (scratch database)" if db_url else "SQLite"
        print(
            f"read model on {storage}; {os.cpu_count()} CPUs; rows seeded directly into "
            "wf_jobs (no Dagster runs; the bridge's GraphQL URL is a closed port)"
        )
        app = create_app(
            {
                "STATE_DB_URL": url,
                "AUTH_MODE": "disabled",
                "DAGSTER_GRAPHQL_URL": f"http://127.0.0.1:{free_port()}/graphql",
                "MEDIA_DIR": str(Path(tmp) / "media"),
                "UPLOAD_DIR": str(Path(tmp) / "uploads"),
            }
        )
        seeded: list = []
        oldest = time.time() - sizes[-1] * JOB_INTERVAL_SECONDS - 3600
        with serve_bridge(app) as base:
            for size in sizes:
                began = time.perf_counter()
                seeded += seed_rows(engine, spec, size - len(seeded), len(seeded), oldest, rng)
                if db_url:
                    analyze(db_url)
                print(f"\nseeded to {size:,} rows in {time.perf_counter() - began:.1f} s")
                figures = measure_read_model(base, seeded, args.samples, args.list_samples, rng)
                list_p95, get_p95 = percentile(figures["list"], 95), percentile(figures["gets"], 95)
                verdict = (
                    list_p95 <= READ_MODEL_LIST_TARGET_MS
                    and get_p95 <= READ_MODEL_STATUS_TARGET_MS
                    and not figures["mismatches"]
                )
                ok = ok and verdict
                print(
                    f"  {size:>7,} jobs: GET /workflows/jobs?limit={LIST_LIMIT} p50 "
                    f"{percentile(figures['list'], 50):.1f} ms, p95 {list_p95:.1f} ms "
                    f"({len(figures['list'])} pages; target p95 <= "
                    f"{READ_MODEL_LIST_TARGET_MS:.0f} ms); GET /workflows/execution/<id> p50 "
                    f"{percentile(figures['gets'], 50):.1f} ms, p95 {get_p95:.1f} ms "
                    f"({len(figures['gets'])} jobs, one client; target p95 <= "
                    f"{READ_MODEL_STATUS_TARGET_MS:.0f} ms); wrong answers "
                    f"{figures['mismatches']}: {'ok' if verdict else 'MISSED'}"
                )
        engine.dispose()
    return 0 if ok else 1


def main() -> int:
    """Populate, measure GETs at each size, then end to end on the last; print the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        default=None,
        help="job counts, ascending (10000,50000; with --read-model 10000,100000)",
    )
    parser.add_argument(
        "--read-model",
        action="store_true",
        help="the job read model's figures only: rows seeded into wf_jobs, no Dagster",
    )
    parser.add_argument("--samples", type=int, default=300, help="timed jobs per size (300)")
    parser.add_argument(
        "--list-samples", type=int, default=100, help="timed jobs-list pages per size (100)"
    )
    parser.add_argument("--jobs", type=int, default=10, help="end-to-end jobs each way (10)")
    parser.add_argument(
        "--pg-url",
        help="a PostgreSQL server URL (postgresql://user@host:port/db); the bench creates "
        "and drops a scratch database there. Default: SQLite",
    )
    parser.add_argument("--seed", type=int, default=7, help="random seed (7)")
    parser.add_argument(
        "--stream-poll",
        type=float,
        default=STREAM_POLL_SECONDS,
        help=f"STREAM_ACTIVE_POLL_SECONDS (default {STREAM_POLL_SECONDS}, as the bridge)",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=10.0,
        help="seconds to let the daemon settle after the stack starts (10): its first "
        "retry-sensor tick reads every failed run of the new population",
    )
    args = parser.parse_args()
    if args.read_model:
        return read_model_main(args)
    sizes = [int(s) for s in (args.sizes or "10000,50000").split(",")]
    if sizes != sorted(sizes):
        parser.error("--sizes must be ascending: the instance only grows")
    spec = load_specs()[WORKFLOW_ID]
    results: list[tuple[int, GetTimings]] = []
    lists: list[tuple[int, ListTimings]] = []
    overhead = None
    with (
        tempfile.TemporaryDirectory(prefix="wf-bridge-bench-") as tmp,
        scratch_database(args.pg_url) as db_url,
    ):
        if db_url:
            os.environ["DAGSTER_PG_URL"] = db_url
        else:
            os.environ.pop("DAGSTER_PG_URL", None)
        home, media = Path(tmp) / "home", Path(tmp) / "media"
        prepare_instance(home)
        env = {"MEDIA_DIR": str(media), "LOCAL_PROVIDER_LATENCY": "0"}
        storage = "PostgreSQL (scratch database)" if db_url else "SQLite"
        print(f"instance {home} on {storage}; {os.cpu_count()} CPUs")
        oldest = time.time() - sizes[-1] * JOB_INTERVAL_SECONDS - 3600
        with dg.DagsterInstance.from_config(str(home)) as instance:
            populator = Populator(instance, spec, args.seed)
            for number, size in enumerate(sizes):
                before = len(populator.jobs)
                seconds = populator.grow(size, oldest)
                check_population(instance, populator)
                if db_url:
                    analyze(db_url)
                counts = {k: sum(1 for v in populator.jobs.values() if v == k) for k, _ in KINDS}
                print(
                    f"\npopulated {size - before:,} jobs in {seconds:.1f} s "
                    f"({(size - before) / seconds:,.0f} jobs/s); now {size:,}: "
                    + ", ".join(f"{n:,} {k}" for k, n in counts.items())
                )
                began = time.perf_counter()
                with DagsterStack(home, env=env) as stack:
                    print(
                        f"stack ready in {time.perf_counter() - began:.1f} s "
                        f"(webserver :{stack.port}, daemon; "
                        f"max {MAX_CONCURRENT_RUNS} concurrent runs)"
                    )
                    time.sleep(args.settle)
                    app = bridge_app(stack, media, args.stream_poll)
                    with serve_bridge(app) as base:
                        timings = measure_gets(
                            base, stack, spec, populator.jobs, args.samples, args.seed + number
                        )
                        report_gets(size, timings)
                        listing = measure_list(
                            base, app, populator, args.list_samples, args.seed + number
                        )
                        report_list(size, listing)
                        results.append((size, timings))
                        lists.append((size, listing))
                        if number == len(sizes) - 1 and args.jobs > 0:
                            overhead = measure_e2e(
                                base, stack, spec, args.jobs, args.seed, args.stream_poll
                            )
    print("\nSummary against the targets")
    ok = True
    for size, timings in results:
        p95 = percentile(timings.repeat, 95)
        p95_first = percentile(timings.first, 95)
        verdict = "ok" if max(p95, p95_first) <= P95_TARGET_MS else "MISSED"
        ok = ok and verdict == "ok" and not timings.mismatches
        print(
            f"  {size:>7,} jobs: p95 repeat {p95:.1f} ms, first {p95_first:.1f} ms "
            f"(target <= {P95_TARGET_MS:.0f} ms): {verdict}"
        )
    for size, listing in lists:
        p95 = percentile(listing.ms, 95)
        verdict = "ok" if p95 <= LIST_P95_TARGET_MS else "MISSED"
        ok = ok and verdict == "ok" and not listing.mismatches
        print(
            f"  {size:>7,} jobs: GET /workflows/jobs?limit={LIST_LIMIT} p50 "
            f"{percentile(listing.ms, 50):.1f} ms, p95 {p95:.1f} ms, "
            f"{max(listing.requests)} GraphQL requests per page at most "
            f"(target p95 <= {LIST_P95_TARGET_MS:.0f} ms): {verdict}"
        )
    if len(results) > 1:
        (small, a), (large, b) = results[0], results[-1]
        for name, left, right in (("repeat", a.repeat, b.repeat), ("first", a.first, b.first)):
            print(
                f"  growth {small:,} -> {large:,} jobs, {name} GET: p50 x"
                f"{percentile(right, 50) / percentile(left, 50):.2f}, "
                f"p95 x{percentile(right, 95) / percentile(left, 95):.2f}"
            )
    if overhead is not None:
        total, outside = overhead
        verdict = "ok" if total <= OVERHEAD_TARGET_S else "MISSED"
        ok = ok and verdict == "ok"
        print(
            f"  end-to-end overhead {total:+.2f} s, {outside:+.2f} s of it outside the run "
            f"(target <= {OVERHEAD_TARGET_S} s): {verdict}"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
