"""Celery run workers against the prewarmed launcher, on this one machine, in one run.

Both launchers are up at once, each with a fresh PostgreSQL database and a stack
(webserver + daemon), and for `celery` one worker host (wf-worker, WORKER_CONCURRENCY =
MAX_CONCURRENT_RUNS) on the local Redis. The offline provider answers at once
(LOCAL_PROVIDER_LATENCY=0), so each job is one run of three steps. Measured, alternating
between the two so that load from elsewhere on the machine falls on both alike:
submit→success per job one at a time on warm workers (queue + launch, and execution),
then jobs/s with 20 and 100 jobs submitted at once, and the CPU our processes spent per
job in each burst (webserver, daemon, zygote or worker, with their children; PostgreSQL
and Redis not counted), which other load does not inflate as it does jobs/s.

Run: `.venv/bin/python bench/scale_out.py [--jobs 10] [--bursts 20 100] [--repeat 2]`.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from inflight import fresh_database
from procfs import tree_cpu_seconds
from run_overhead import WORKFLOW_ID, percentile, run_burst, run_sequential

from runtime.instance import MAX_CONCURRENT_RUNS
from runtime.stack import DagsterStack
from wf_core.settings import REPO_ROOT
from wf_core.specs import WorkflowSpec, load_specs

PG_SERVER = os.environ.get("BENCH_PG_SERVER", "postgresql://postgres@127.0.0.1:5432/postgres")
BROKER = os.environ.get("BENCH_BROKER", "redis://127.0.0.1:6379/10")


@contextmanager
def celery_worker(home: Path, env: dict[str, str], concurrency: int) -> Iterator[list[int]]:
    """One worker host (wf-worker), stopped with its pool at the end."""
    log = (home.parent / "worker.log").open("wb")
    proc = subprocess.Popen(
        [str(REPO_ROOT / ".venv/bin/wf-worker"), "--concurrency", str(concurrency)],
        env={**env, "DAGSTER_HOME": str(home)},
        cwd=REPO_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        from celery import Celery

        app = Celery(broker=BROKER)
        deadline = time.monotonic() + 90
        while not app.control.ping(timeout=1.0):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the worker did not start; see {home.parent / 'worker.log'}")
        app.close()
        yield [proc.pid]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@dataclass
class Side:
    """One launcher's running stack (and worker), and what was measured on it."""

    launcher: str
    stack: DagsterStack
    roots: list[int]
    walls: list[float] = field(default_factory=list)
    launch: list[float] = field(default_factory=list)
    execution: list[float] = field(default_factory=list)
    started: list[float] = field(default_factory=list)
    rates: dict[int, list[float]] = field(default_factory=dict)
    cpu: dict[int, list[float]] = field(default_factory=dict)


@contextmanager
def start_side(launcher: str, root: Path, concurrency: int) -> Iterator[Side]:
    """A database, a stack and (celery) a worker host for one launcher."""
    with fresh_database(PG_SERVER, "wf_scale") as pg:
        env = {
            "RUN_LAUNCHER": launcher,
            "DAGSTER_PG_URL": pg,
            "CELERY_BROKER_URL": BROKER,
            "MAX_CONCURRENT_RUNS": str(concurrency),
            "MEDIA_DIR": str(root / "media"),
            "LOCAL_PROVIDER_LATENCY": "0",
        }
        os.environ.update(env)  # dagster.yaml is written from this process's environment
        os.environ.pop("WF_STATE_DB_URL", None)
        with DagsterStack(root / "home", env=env, timeout=120) as stack:
            worker = (
                celery_worker(root / "worker_home", {**os.environ, **env}, concurrency)
                if launcher == "celery"
                else _nothing()
            )
            with worker as worker_pids:
                yield Side(launcher, stack, [p.pid for p in stack.procs.values()] + worker_pids)


def sequential(side: Side, spec: WorkflowSpec) -> None:
    """One job, waited for; its phases recorded."""
    (timing,) = run_sequential(side.stack, spec, 1)
    side.walls.append(timing.wall)
    side.launch.append(timing.started - timing.created)
    side.execution.append(timing.ended - timing.started)
    # The launcher's own part: RUN_STARTING (the daemon hands the run over) to RUN_START.
    launched = side.stack.instance.get_run_stats(timing.run_id).launch_time
    side.started.append(timing.started - (launched or timing.created))


def burst(side: Side, spec: WorkflowSpec, count: int) -> None:
    """`count` jobs at once: jobs/s and our processes' CPU per job."""
    cpu_before = tree_cpu_seconds(side.roots)
    elapsed, failed = run_burst(side.stack, spec, count)
    if failed:
        raise SystemExit(f"{side.launcher}: {len(failed)} runs failed in the burst")
    cpu = tree_cpu_seconds(side.roots) - cpu_before
    side.rates.setdefault(count, []).append(count / elapsed)
    side.cpu.setdefault(count, []).append(cpu / count)


@contextmanager
def _nothing() -> Iterator[list[int]]:
    yield []


def figures(side: Side) -> dict[str, float]:
    """The table's column for one launcher."""
    column = {
        "submit->success median": statistics.median(side.walls),
        "submit->success p95": percentile(side.walls, 95),
        "submit->RUN_START median (queue + launch)": statistics.median(side.launch),
        "RUN_STARTING->RUN_START median (launch only)": statistics.median(side.started),
        "RUN_START->RUN_SUCCESS median (3 steps)": statistics.median(side.execution),
    }
    for count, rates in side.rates.items():
        column[f"jobs/s, {count} at once (median)"] = statistics.median(rates)
        column[f"CPU-s per job, {count} at once"] = statistics.median(side.cpu[count])
    return column


def main() -> int:
    """Both launchers up at once; measurements alternate between them; one table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10, help="sequential jobs each (10)")
    parser.add_argument("--bursts", type=int, nargs="*", default=[20, 100])
    parser.add_argument("--repeat", type=int, default=2, help="bursts of each size (2)")
    parser.add_argument("--concurrency", type=int, default=MAX_CONCURRENT_RUNS)
    args = parser.parse_args()
    spec = load_specs()[WORKFLOW_ID]
    with tempfile.TemporaryDirectory(prefix="wf-scale-") as tmp, ExitStack() as running:
        sides = [
            running.enter_context(start_side(name, Path(tmp) / name, args.concurrency))
            for name in ("prewarmed", "celery")
        ]
        for side in sides:
            run_sequential(side.stack, spec, 2)  # warm-up: imports, pools, the zygote
        for i in range(args.jobs):
            for side in sides if i % 2 == 0 else reversed(sides):
                sequential(side, spec)
        for count in args.bursts:
            for i in range(args.repeat):
                for side in sides if i % 2 == 0 else reversed(sides):
                    burst(side, spec, count)
        results = {side.launcher: figures(side) for side in sides}
    print(
        f"\n{os.cpu_count()} cores, PostgreSQL, MAX_CONCURRENT_RUNS={args.concurrency} "
        f"(celery: one worker host, concurrency {args.concurrency}); both stacks up at once, "
        f"measurements alternating; {args.jobs} sequential jobs each after 2 warm-up; "
        "one 3-step run per job"
    )
    print(f"  {'':46}" + "".join(f"{name:>12}" for name in results))
    for name in next(iter(results.values())):
        unit = "" if name.startswith(("jobs/s", "CPU")) else "s"
        row = "".join(f"{results[launcher][name]:>11.2f}{unit or ' '}" for launcher in results)
        print(f"  {name:46}{row}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
