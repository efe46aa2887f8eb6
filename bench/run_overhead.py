"""How much does Dagster add around a 3-step job? Sequential latency, then a burst with memory.

Run: `.venv/bin/python bench/run_overhead.py [--jobs 10] [--burst 20]`.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from procfs import process_tree

from runtime.instance import MAX_CONCURRENT_RUNS
from runtime.stack import TERMINAL_STATUSES, DagsterStack
from wf_core.job_ids import new_job_id
from wf_core.settings import REPO_ROOT
from wf_core.specs import WorkflowSpec, load_specs

WORKFLOW_ID = "img-edit-to-video"
SAMPLE = REPO_ROOT / "samples" / "sample.jpg"
POLL_SECONDS = 0.1
SAMPLE_SECONDS = 0.2
RUNS_QUERY = """
query Runs($ids: [String]) { runsOrError(filter: {runIds: $ids}) {
  ... on Runs { results { runId status } } } }
"""


@dataclass
class Timing:
    """One run: client wall time and the server's own timestamps (epoch seconds)."""

    run_id: str
    wall: float
    created: float
    started: float
    ended: float


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile of `values`."""
    ordered = sorted(values)
    rank = max(1, round(pct / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def timing_of(stack: DagsterStack, run_id: str, wall: float) -> Timing:
    """The run's creation (submit), RUN_START and RUN_SUCCESS times, plus our wall time."""
    record = stack.instance.get_run_record_by_id(run_id)
    stats = stack.instance.get_run_stats(run_id)
    if record is None or stats.start_time is None or stats.end_time is None:
        raise RuntimeError(f"run {run_id} has no start/end events")
    return Timing(
        run_id, wall, record.create_timestamp.timestamp(), stats.start_time, stats.end_time
    )


def run_sequential(stack: DagsterStack, spec: WorkflowSpec, count: int) -> list[Timing]:
    """Submit `count` jobs one after another, each waited for before the next."""
    timings = []
    for _ in range(count):
        job_id = new_job_id()
        stack.add_job_partition(job_id)
        began = time.perf_counter()
        run_id = stack.submit_job(spec, job_id, SAMPLE, launched_by="bench")
        status = stack.wait_for_run(run_id, timeout=300, poll=POLL_SECONDS)
        wall = time.perf_counter() - began
        if status != dg.DagsterRunStatus.SUCCESS:
            raise SystemExit(f"run {run_id} ended {status.value}; see {stack.home}")
        timings.append(timing_of(stack, run_id, wall))
    return timings


def rss_kib(pid: int) -> int:
    """VmRSS of one process in KiB (0 if it is gone or a zombie)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class MemorySampler(threading.Thread):
    """Samples the summed RSS and process count of a process tree until stopped."""

    def __init__(self, roots: list[int]) -> None:
        super().__init__(daemon=True)
        self.roots = roots
        self.peak_rss_kib = 0
        self.peak_procs = 0
        self.done = threading.Event()

    def sample(self) -> tuple[int, int]:
        """(summed RSS in KiB, process count) right now."""
        pids = process_tree(self.roots)
        return sum(rss_kib(pid) for pid in pids), len(pids)

    def run(self) -> None:
        while not self.done.is_set():
            rss, procs = self.sample()
            self.peak_rss_kib = max(self.peak_rss_kib, rss)
            self.peak_procs = max(self.peak_procs, procs)
            self.done.wait(SAMPLE_SECONDS)


def run_burst(stack: DagsterStack, spec: WorkflowSpec, count: int) -> tuple[float, list[str]]:
    """Submit `count` jobs at once; seconds until all are terminal, and the failed run ids."""
    job_ids = [new_job_id() for _ in range(count)]
    for job_id in job_ids:
        stack.add_job_partition(job_id)
    began = time.perf_counter()
    with ThreadPoolExecutor(max_workers=count) as pool:
        run_ids = list(
            pool.map(
                lambda job_id: stack.submit_job(spec, job_id, SAMPLE, launched_by="bench"), job_ids
            )
        )
    statuses: dict[str, str] = {}
    while len(statuses) < count:
        if time.perf_counter() - began > 600:
            raise SystemExit(f"burst not finished after 600 s; see {stack.home}")
        for run in stack.graphql(RUNS_QUERY, {"ids": run_ids})["runsOrError"]["results"]:
            if dg.DagsterRunStatus(run["status"]) in TERMINAL_STATUSES:
                statuses[run["runId"]] = run["status"]
        time.sleep(POLL_SECONDS)
    elapsed = time.perf_counter() - began
    return elapsed, [run_id for run_id, status in statuses.items() if status != "SUCCESS"]


def report_sequential(timings: list[Timing]) -> None:
    """Print median and p95 of each phase of the sequential runs."""
    phases = {
        "submit -> SUCCESS seen (client wall)": [t.wall for t in timings],
        "submit -> RUN_START (queue + launch)": [t.started - t.created for t in timings],
        "RUN_START -> RUN_SUCCESS (step execution)": [t.ended - t.started for t in timings],
        "RUN_SUCCESS -> seen by poll (+ HTTP)": [t.wall - (t.ended - t.created) for t in timings],
    }
    print(f"\nSequential: {len(timings)} jobs, one at a time")
    print(f"  {'phase':44} {'median':>8} {'p95':>8}")
    for name, values in phases.items():
        print(f"  {name:44} {statistics.median(values):7.2f}s {percentile(values, 95):7.2f}s")
    print(f"  (wall time includes the {POLL_SECONDS:.1f} s status-polling granularity)")


def main() -> int:
    """Start a stack on a temporary home, run both measurements, print the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10, help="sequential jobs (default 10)")
    parser.add_argument("--burst", type=int, default=20, help="jobs submitted at once (20)")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured jobs first (1)")
    args = parser.parse_args()
    spec = load_specs()[WORKFLOW_ID]
    with tempfile.TemporaryDirectory(prefix="wf-bench-") as tmp:
        env = {"MEDIA_DIR": str(Path(tmp) / "media"), "LOCAL_PROVIDER_LATENCY": "0"}
        began = time.perf_counter()
        with DagsterStack(Path(tmp) / "home", env=env) as stack:
            print(
                f"stack ready in {time.perf_counter() - began:.1f} s "
                f"(webserver :{stack.port}, daemon; SQLite, dequeue every 1 s, "
                f"max {MAX_CONCURRENT_RUNS} concurrent runs)"
            )
            run_sequential(stack, spec, args.warmup)
            report_sequential(run_sequential(stack, spec, args.jobs))
            sampler = MemorySampler([proc.pid for proc in stack.procs.values()])
            idle_rss, idle_procs = sampler.sample()
            sampler.start()
            elapsed, failed = run_burst(stack, spec, args.burst)
            sampler.done.set()
            sampler.join()
            print(f"\nBurst: {args.burst} jobs submitted at once (parallel GraphQL submits)")
            print(
                f"  all terminal after {elapsed:.2f} s "
                f"({elapsed / args.burst:.2f} s per job; polled every {POLL_SECONDS:.1f} s)"
            )
            print(f"  failed runs: {', '.join(failed) if failed else 'none'}")
            print(f"  idle before burst: {idle_rss / 1024:.0f} MiB RSS in {idle_procs} processes")
            print(
                f"  peak during burst: {sampler.peak_rss_kib / 1024:.0f} MiB RSS "
                f"(sum over webserver + daemon + children, shared pages counted per process), "
                f"{sampler.peak_procs} processes (sampled every {SAMPLE_SECONDS:.1f} s)"
            )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
