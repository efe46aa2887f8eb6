"""How long the engine takes around each provider call: step transitions, first create,
job time over provider time, CPU per job.

A real stack on PostgreSQL (bench/inflight.py's `replicate_stack`: dagster-webserver,
dagster-daemon, the code server, the bridge under gunicorn as the webhook receiver, the
loopback Replicate making each prediction take L seconds and calling the bridge back,
signed). Jobs of `img-edit-to-video` (two generation steps) are submitted through the
bridge (`POST /workflows/execute`). Per job, from the fake's own records (when each
create arrived, when each webhook was sent), the state database (when the bridge recorded
the webhook, when each intent was written) and Dagster's run records and event log:
- webhook recorded -> next prediction's create arrives at the provider (and from the
  moment the provider sent the webhook);
- submit answered (202) -> first prediction's create arrives;
- job time (submit answered -> last run's end) / provider time (2 x L);
- where a transition's time goes: webhook recorded -> hand-off -> run created ->
  RUN_ENQUEUED -> RUN_DEQUEUED -> RUN_STARTING -> RUN_START -> first STEP_START ->
  the next step's STEP_START -> its intent -> its create (the same for the first run);
- CPU-seconds per job of the stack's processes (webserver, daemon, code server, run
  workers, the bridge) and of PostgreSQL, separately; gross, and net of the idle rate
  measured for `--idle` seconds before the first submit; events written per run.

By default jobs run one after another (the next is submitted `--gap` seconds after the
previous one is final), so transitions are measured unloaded. `--stagger S` submits one
job every S seconds without waiting (with jobs x S < L the transitions of different jobs
do not overlap: for long L). `--concurrency C` submits C jobs at once, then the next C
once those are final (`--concurrency N` = all at once).

By default PostgreSQL is a private cluster of the bench's own (its CPU is the bench's
alone); `--shared-pg` uses a fresh database on TEST_PG_URL's server instead.

Run: `.venv/bin/python bench/transitions.py --jobs 10 --latency 5` and
`.venv/bin/python bench/transitions.py --jobs 5 --latency 60 --stagger 11`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import dagster as dg
import httpx
import sqlalchemy as sa
from inflight import (
    FINAL,
    SAMPLE,
    WORKFLOW_ID,
    BenchStack,
    job_statuses,
    postgres_pids,
    replicate_stack,
)
from procfs import tree_cpu_seconds

from runtime.stack import DagsterStack
from wf_core import tags as t
from wf_core.specs import WorkflowSpec, load_specs
from wf_store.predictions import Prediction, PredictionStore
from wf_store.schema import webhook_events
from wf_store.state_db import engine_for

MARKS = (
    dg.DagsterEventType.RUN_ENQUEUED,
    dg.DagsterEventType.RUN_DEQUEUED,
    dg.DagsterEventType.RUN_STARTING,
    dg.DagsterEventType.RUN_START,
    dg.DagsterEventType.STEP_START,
)


@dataclass
class Job:
    """One submitted job: wall times (time.time()) seen by the bench."""

    job_id: str
    run_id: str
    sent: float
    answered: float
    end: float = 0.0
    status: str = "running"
    runs: int = 0
    figures: dict = field(default_factory=dict)


def percentile(values: list[float], share: float) -> float | None:
    """Nearest-rank percentile (p50 = share 0.5); None without values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def spread(values: list[float], scale: float = 1000.0) -> dict:
    """p50, p95, min, max (ms by default) of `values` in seconds."""
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50": round(percentile(values, 0.5) * scale, 1),
        "p95": round(percentile(values, 0.95) * scale, 1),
        "min": round(min(values) * scale, 1),
        "max": round(max(values) * scale, 1),
    }


def pg_root(bench: BenchStack) -> int | None:
    """The PostgreSQL server process whose tree (backends, reaped ones too) is measured."""
    if bench.postmaster:
        return bench.postmaster
    pids = set(postgres_pids())
    for pid in pids:  # the postmaster: a postgres process whose parent is not one
        ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        if ppid not in pids:
            return pid
    return None


def submit(bridge_url: str) -> Job:
    """POST /workflows/execute the sample image through the bridge."""
    sent = time.time()
    response = httpx.post(
        f"{bridge_url}/workflows/execute",
        data={"workflow_id": WORKFLOW_ID},
        files={"file": ("sample.jpg", SAMPLE.read_bytes(), "image/jpeg")},
        timeout=60,
    )
    answered = time.time()
    if response.status_code != 202:
        raise RuntimeError(f"execute: HTTP {response.status_code} {response.text}")
    body = response.json()
    return Job(body["job_id"], body["execution_id"], sent, answered)


def wait_final(stack: DagsterStack, spec: WorkflowSpec, jobs: list[Job], deadline: float) -> None:
    """Poll the run records (twice a second) until every job in `jobs` is final."""
    waiting = {job.job_id: job for job in jobs}
    while waiting and time.time() < deadline:
        for job_id, (status, runs, end) in job_statuses(stack, spec).items():
            job = waiting.get(job_id)
            if job and status in FINAL:
                job.status, job.runs, job.end = status, runs, end
                del waiting[job_id]
        time.sleep(0.5)


def run_jobs(args: argparse.Namespace, bench: BenchStack, spec: WorkflowSpec) -> list[Job]:
    """Submit the jobs as the mode says and wait until all are final."""
    deadline = time.time() + args.timeout
    jobs: list[Job] = []
    if args.stagger:
        for _ in range(args.jobs):
            jobs.append(submit(bench.bridge_url))
            print(f"submitted {len(jobs)}/{args.jobs}", flush=True)
            time.sleep(args.stagger)
        wait_final(bench.stack, spec, jobs, deadline)
        return jobs
    while len(jobs) < args.jobs and time.time() < deadline:
        size = min(args.concurrency, args.jobs - len(jobs))
        with ThreadPoolExecutor(size) as pool:
            batch = list(pool.map(lambda _: submit(bench.bridge_url), range(size)))
        jobs += batch
        wait_final(bench.stack, spec, batch, deadline)
        print(f"final {len(jobs)}/{args.jobs}", flush=True)
        time.sleep(args.gap)
    return jobs


def provider_times(bench: BenchStack) -> tuple[dict[str, float], dict[str, float]]:
    """When each prediction's create arrived at the fake, and when its first webhook left."""
    with bench.fake.lock:
        created = {
            pid: datetime.fromisoformat(p.created_at).timestamp()
            for pid, p in bench.fake.predictions.items()
        }
        sent: dict[str, float] = {}
        for delivery in bench.fake.webhook_deliveries:
            sent.setdefault(delivery.prediction_id, delivery.at)
    return created, sent


def webhooks_recorded(state_url: str) -> dict[str, float]:
    """When the bridge first recorded a webhook of each prediction (state database)."""
    engine = engine_for(state_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(
                    webhook_events.c.prediction_id, sa.func.min(webhook_events.c.received_at)
                ).group_by(webhook_events.c.prediction_id)
            ).all()
    finally:
        engine.dispose()
    return {pid: at for pid, at in rows if pid}


def run_marks(instance: dg.DagsterInstance, run_id: str) -> dict:
    """A run's created time, its lifecycle and step-start times, and its event count."""
    record = instance.get_run_record_by_id(run_id)
    marks: dict = {"created": record.create_timestamp.timestamp(), "step_starts": []}
    events = instance.all_logs(run_id)
    for entry in events:
        event = entry.dagster_event
        if event is None or event.event_type not in MARKS:
            continue
        if event.event_type == dg.DagsterEventType.STEP_START:
            marks["step_starts"].append((event.step_key or "", entry.timestamp))
        else:
            marks.setdefault(event.event_type.name, entry.timestamp)
    marks["events"] = len(events)
    marks["dagster_events"] = sum(1 for e in events if e.dagster_event is not None)
    return marks


def segments(points: list[tuple[str, float | None]]) -> dict[str, float]:
    """Consecutive differences of the known points, named `a -> b` (seconds)."""
    known = [(name, at) for name, at in points if at is not None]
    return {f"{a} -> {b}": tb - ta for (a, ta), (b, tb) in zip(known, known[1:], strict=False)}


def step_start(marks: dict, step: str) -> float | None:
    """The STEP_START time of the step named `step` (its step key ends with the name)."""
    for key, at in marks["step_starts"]:
        if key.endswith(step):
            return at
    return None


def ms(parts: dict[str, list[float]], share: float) -> dict[str, int]:
    """Each segment's percentile, in whole milliseconds."""
    return {name: round((percentile(v, share) or 0.0) * 1000) for name, v in parts.items()}


def analyse(bench: BenchStack, spec: WorkflowSpec, jobs: list[Job]) -> dict:
    """Per-job figures and per-segment breakdowns from the records of every side."""
    created, sent = provider_times(bench)
    recorded = webhooks_recorded(bench.stack.state_db_url)
    store = PredictionStore(bench.stack.state_db_url)
    rows = store.for_jobs([job.job_id for job in jobs])
    store.close()
    instance = bench.stack.instance
    first_parts: dict[str, list[float]] = {}
    next_parts: dict[str, list[float]] = {}
    events_per_run: list[int] = []
    for job in jobs:
        mine: list[Prediction] = sorted(rows.get(job.job_id, []), key=lambda r: r.created_at)
        if len(mine) < 2 or not all(r.prediction_id in created for r in mine[:2]):
            continue
        one, two = mine[0], mine[1]
        job.figures = {
            "submit_to_first_create": created[one.prediction_id] - job.answered,
            "webhook_sent_to_next_create": created[two.prediction_id] - sent[one.prediction_id],
            "webhook_recorded_to_next_create": created[two.prediction_id]
            - recorded[one.prediction_id],
            "job_seconds": job.end - job.answered,
        }
        first = run_marks(instance, job.run_id)
        following = instance.get_run_records(dg.RunsFilter(tags={t.CONTINUES: one.id}), limit=1)
        for run in instance.get_run_records(dg.RunsFilter(tags={t.JOB_ID: job.job_id})):
            events_per_run.append(run_marks(instance, run.dagster_run.run_id)["events"])
        for name, at in segments(
            [
                ("submit sent", job.sent),
                ("run created", first["created"]),
                ("ENQUEUED", first.get("RUN_ENQUEUED")),
                ("DEQUEUED", first.get("RUN_DEQUEUED")),
                ("STARTING", first.get("RUN_STARTING")),
                ("RUN_START", first.get("RUN_START")),
                ("first STEP_START", first["step_starts"][0][1] if first["step_starts"] else None),
                (f"STEP_START {one.step}", step_start(first, one.step)),
                ("intent written", one.created_at),
                ("create at provider", created[one.prediction_id]),
            ]
        ).items():
            first_parts.setdefault(name, []).append(at)
        if not following:
            continue
        cont = run_marks(instance, following[0].dagster_run.run_id)
        for name, at in segments(
            [
                ("webhook sent", sent[one.prediction_id]),
                ("webhook recorded", recorded[one.prediction_id]),
                ("handed off", one.handed_off_at),
                ("run created", cont["created"]),
                ("ENQUEUED", cont.get("RUN_ENQUEUED")),
                ("DEQUEUED", cont.get("RUN_DEQUEUED")),
                ("STARTING", cont.get("RUN_STARTING")),
                ("RUN_START", cont.get("RUN_START")),
                (f"STEP_START {one.step}", step_start(cont, one.step)),
                (f"STEP_START {two.step}", step_start(cont, two.step)),
                ("intent written", two.created_at),
                ("create at provider", created[two.prediction_id]),
            ]
        ).items():
            next_parts.setdefault(name, []).append(at)
    done = [job for job in jobs if job.figures]

    def of(key: str) -> list[float]:
        return [job.figures[key] for job in done]

    return {
        "webhook_recorded_to_next_create_ms": spread(of("webhook_recorded_to_next_create")),
        "webhook_sent_to_next_create_ms": spread(of("webhook_sent_to_next_create")),
        "submit_to_first_create_ms": spread(of("submit_to_first_create")),
        "job_s": spread(of("job_seconds"), scale=1.0),
        "submit_answered_ms": spread([job.answered - job.sent for job in jobs]),
        "first_run_breakdown_ms_p50": ms(first_parts, 0.5),
        "continuation_breakdown_ms_p50": ms(next_parts, 0.5),
        "continuation_breakdown_ms_p95": ms(next_parts, 0.95),
        "events_per_run_mean": round(statistics.mean(events_per_run), 1) if events_per_run else 0,
        "measured_jobs": len(done),
    }  # fmt: skip


def cpu_by_process(bench: BenchStack) -> dict[str, float]:
    """CPU-seconds so far of each of the stack's process trees, by name (and the bridge)."""
    names = [*bench.stack.procs, "bridge"]
    return {name: tree_cpu_seconds([pid]) for name, pid in zip(names, bench.roots, strict=False)}


def run_bench(args: argparse.Namespace) -> dict:
    """Start the stack, measure idle, run the jobs, compute the figures."""
    spec = load_specs()[WORKFLOW_ID]
    with replicate_stack(args.latency, private_pg=not args.shared_pg) as bench:
        pg = pg_root(bench)
        pg_roots = [pg] if pg else []
        time.sleep(10)  # past the stack's start-up (first sensor ticks, first loads)
        stack0, pg0, idle_start = (
            tree_cpu_seconds(bench.roots),
            tree_cpu_seconds(pg_roots),
            time.time(),
        )
        by0 = cpu_by_process(bench)
        time.sleep(args.idle)
        idle_seconds = time.time() - idle_start
        idle_stack = (tree_cpu_seconds(bench.roots) - stack0) / idle_seconds
        idle_pg = (tree_cpu_seconds(pg_roots) - pg0) / idle_seconds
        idle_by = {n: (cpu - by0[n]) / idle_seconds for n, cpu in cpu_by_process(bench).items()}
        stack0, pg0, began = tree_cpu_seconds(bench.roots), tree_cpu_seconds(pg_roots), time.time()
        by0 = cpu_by_process(bench)
        jobs = run_jobs(args, bench, spec)
        wall = time.time() - began
        by_process = {n: cpu - by0[n] for n, cpu in cpu_by_process(bench).items()}
        stack_cpu = tree_cpu_seconds(bench.roots) - stack0
        pg_cpu = tree_cpu_seconds(pg_roots) - pg0
        completed = [job for job in jobs if job.status == "completed"]
        n = max(1, len(completed))
        figures = analyse(bench, spec, completed)
        job_times = [job.end - job.answered for job in completed]
        provider = 2 * args.latency
        return {
            "jobs": args.jobs,
            "latency_s": args.latency,
            "mode": (
                f"stagger {args.stagger}s" if args.stagger
                else "sequential" if args.concurrency == 1
                else f"{args.concurrency} at once"
            ),
            "completed": len(completed),
            "final": sum(1 for job in jobs if job.status in FINAL),
            **figures,
            "job_over_provider_p50": round((percentile(job_times, 0.5) or 0) / provider, 2),
            "job_over_provider_p95": round((percentile(job_times, 0.95) or 0) / provider, 2),
            "runs_per_job": round(sum(job.runs for job in jobs) / max(1, len(jobs)), 2),
            "cpu_s_per_job_stack": round(stack_cpu / n, 3),
            "cpu_s_per_job_postgres": round(pg_cpu / n, 3),
            "cpu_s_per_job_stack_net_of_idle": round((stack_cpu - idle_stack * wall) / n, 3),
            "cpu_s_per_job_postgres_net_of_idle": round((pg_cpu - idle_pg * wall) / n, 3),
            "cpu_s_per_job_by_process_net_of_idle": {
                name: round((cpu - idle_by[name] * wall) / n, 3)
                for name, cpu in by_process.items()
            },
            "idle_cpu_per_s_by_process": {name: round(v, 3) for name, v in idle_by.items()},
            "idle_cpu_per_s_stack": round(idle_stack, 3),
            "idle_cpu_per_s_postgres": round(idle_pg, 3),
            "wall_s": round(wall, 1),
            "predictions_created": bench.fake.created_count(),
            "predictions_needed": 2 * len(jobs),
            "postgres": "shared server" if args.shared_pg else "private cluster",
            "load_average": " ".join(f"{v:.2f}" for v in os.getloadavg()),
        }  # fmt: skip


def table(result: dict) -> str:
    """The few lines a person reads."""
    lines = [
        f"transitions: {result['jobs']} jobs, L={result['latency_s']}s, {result['mode']},"
        f" {result['completed']} completed, load {result['load_average']}",
        f"{'':34} {'p50':>9} {'p95':>9}",
    ]
    for label, key in (
        ("webhook recorded -> next create ms", "webhook_recorded_to_next_create_ms"),
        ("webhook sent -> next create ms", "webhook_sent_to_next_create_ms"),
        ("submit answered -> first create ms", "submit_to_first_create_ms"),
        ("job s", "job_s"),
    ):
        row = result[key]
        lines.append(f"{label:34} {row.get('p50', '-'):>9} {row.get('p95', '-'):>9}")
    lines.append(
        f"job / provider time p50 {result['job_over_provider_p50']}"
        f"  CPU-s per job: stack {result['cpu_s_per_job_stack']}"
        f" (net of idle {result['cpu_s_per_job_stack_net_of_idle']}),"
        f" PostgreSQL {result['cpu_s_per_job_postgres']}"
        f" (net {result['cpu_s_per_job_postgres_net_of_idle']}); runs/job {result['runs_per_job']}"
    )
    lines.append("continuation (p50 ms):")
    lines += [f"  {k:52} {v:>7}" for k, v in result["continuation_breakdown_ms_p50"].items()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=10)
    parser.add_argument("--latency", type=float, default=5.0, help="provider seconds per call")
    parser.add_argument("--concurrency", type=int, default=1, help="jobs submitted at once")
    parser.add_argument("--gap", type=float, default=1.0, help="seconds between batches")
    parser.add_argument("--stagger", type=float, help="submit one job every S s, not waiting")
    parser.add_argument("--idle", type=float, default=15.0, help="idle seconds measured first")
    parser.add_argument("--shared-pg", action="store_true", help="TEST_PG_URL's server")
    parser.add_argument("--timeout", type=float, default=540.0)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    result = run_bench(args)
    print(json.dumps(result, indent=2))
    print(table(result))


if __name__ == "__main__":
    main()
