"""What a step transition could cost in a warm process: design measurement for issue 23.

The same kind of stack as bench/transitions.py (bench/inflight.py's `replicate_stack`:
PostgreSQL, the bridge as the webhook receiver, the loopback Replicate with signed
webhooks), but the daemon is stopped once the stack is up: no sensor tick, no queue, no
fork. A warm worker process (this file with `--worker`, started with the stack's
environment) imports the code location (definitions.py) once and holds a DagsterInstance.
For each job it
1. executes the job's first run in-process (`dg.execute_job` of the workflow job, the
   tags and run config the bridge gives it): the upload, then the first generation step,
   which creates its prediction and parks;
2. when the bridge has recorded the prediction's webhook (the bench polls the state
   database every 10 ms and tells the worker), does what the parked-steps sensor and the
   run launcher do today, in-process: `continuation_request` (same job, tags, run config,
   asset selection), `hand_off`, then `dg.execute_job(..., asset_selection=...)`: the
   step collects its output (a materialization of its asset partition) and the next step
   creates its prediction and parks (path b);
3. the same for the last step's prediction (the run that ends the job).
Per continuation: webhook recorded -> next create at the provider, command -> create,
the worker's wall time and CPU (getrusage), PostgreSQL's CPU, events written; the worker's
first continuation apart from the others (its first run has already warmed it).

`--fork`: each run in a child forked from the worker for it (the zygote's model, which
lets a launcher signal a run to cancel it); the child opens its own instance and store.

Path (c): the worker reports a step's materialization itself, without a run
(`instance.report_runless_asset_event(dg.AssetMaterialization(...))`): wall and CPU per
report, `--reports` times, on a partition no job uses.

Run: `.venv/bin/python bench/warm_continuation.py --jobs 10 --latency 2 [--fork]`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import dagster as dg
from inflight import SAMPLE, WORKFLOW_ID, replicate_stack
from procfs import tree_cpu_seconds
from transitions import ms, run_marks, segments, spread, step_start

from wf_core.job_ids import new_job_id
from wf_core.settings import REPO_ROOT, state_db_url
from wf_store.predictions import COMPLETED, PredictionStore

JOB_NAME_ENV = "WARM_BENCH_JOB"


def cpu_now() -> float:
    """This process's CPU-seconds so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def workflow_job() -> dg.JobDefinition:
    """The workflow's job from the code location (a module-level target for reconstructable)."""
    import definitions

    return definitions.defs.resolve_job_def(os.environ[JOB_NAME_ENV])


# --- the warm worker --------------------------------------------------------------------


class Worker:
    """Holds the code location and an instance; runs one command a line from stdin."""

    def __init__(self) -> None:
        began, cpu0 = time.time(), cpu_now()
        import definitions  # the code location: specs, resources, sensors (paid once)
        from sensors.parked_steps import continuation_request
        from wf_core.run_config import build_run_config
        from wf_core.specs import load_specs
        from wf_core.tags import job_tags

        self.definitions = definitions
        self.continuation_request = continuation_request
        self.build_run_config = build_run_config
        self.job_tags = job_tags
        self.spec = load_specs()[WORKFLOW_ID]
        os.environ[JOB_NAME_ENV] = self.spec.job_name
        self.job = dg.reconstructable(workflow_job)
        self.instance = dg.DagsterInstance.get()
        self.store = PredictionStore(state_db_url())
        self.ready = {
            "import_s": round(time.time() - began, 2),
            "cpu_s": round(cpu_now() - cpu0, 2),
        }

    def execute(self, run_config: dict, tags: dict[str, str], selection=None) -> dict:
        began, cpu0 = time.time(), cpu_now()
        result = dg.execute_job(
            self.job,
            instance=self.instance,
            run_config=run_config,
            tags=tags,
            asset_selection=selection,
        )
        wall, cpu = time.time() - began, cpu_now() - cpu0
        events = self.instance.all_logs(result.run_id)
        return {
            "run_id": result.run_id,
            "success": result.success,
            "began": began,
            "wall_s": wall,
            "cpu_s": cpu,
            "events": len(events),
            "dagster_events": sum(1 for e in events if e.dagster_event is not None),
        }

    def first(self, job_id: str) -> dict:
        """The job's first run, as the bridge submits it (whole job, the job's tags)."""
        self.instance.add_dynamic_partitions("jobs", [job_id])
        run_config = self.build_run_config(self.spec, None, source=str(SAMPLE))
        tags = self.job_tags(self.spec.id, job_id, "bench", "bench")
        return self.execute(run_config, tags)

    def cont(self, intent_id: str) -> dict:
        """What the parked-steps sensor and the launcher do for one completed prediction."""
        received = time.time()
        row = self.store.get(intent_id)
        parent = self.instance.get_run_by_id(row.run_id) if row.run_id else None
        request = self.continuation_request(self.spec, row, parent)
        self.store.hand_off([row.id])
        out = self.execute(dict(request.run_config), dict(request.tags), request.asset_selection)
        out["received"] = received
        return out

    def report(self, count: int) -> dict:
        """Path (c): materializations reported without a run, on a partition of no job."""
        from wf_assets.asset_keys import asset_key_for

        partition = new_job_id()
        self.instance.add_dynamic_partitions("jobs", [partition])
        key = asset_key_for(self.spec, self.spec.steps[1].name)
        walls, cpus = [], []
        for _ in range(count):
            began, cpu0 = time.time(), cpu_now()
            self.instance.report_runless_asset_event(
                dg.AssetMaterialization(
                    asset_key=key,
                    partition=partition,
                    metadata={"checkpoint": dg.MetadataValue.json({"status": "completed"})},
                )
            )
            walls.append(time.time() - began)
            cpus.append(cpu_now() - cpu0)
        return {"wall_s": walls, "cpu_s": cpus}

    def forked(self, command: str, arg: str) -> dict:
        """`first`/`cont` in a child forked for it (the zygote's model: a run is a process
        the launcher can signal); the child opens its own instance and store."""
        began, cpu0 = time.time(), children_cpu()
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            code = 1
            try:
                self.instance = dg.DagsterInstance.get()
                self.store = PredictionStore(state_db_url())
                out = self.first(arg) if command == "first" else self.cont(arg)
                os.write(write, json.dumps(out).encode())
                code = 0
            finally:
                os._exit(code)
        os.close(write)
        with os.fdopen(read, "rb") as pipe:
            data = pipe.read()
        os.waitpid(pid, 0)
        out = json.loads(data)
        out.update(wall_s=time.time() - began, cpu_s=children_cpu() - cpu0, child_began=began)
        return out


def children_cpu() -> float:
    """CPU-seconds of this process's reaped children."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def serve_worker() -> None:
    """`--worker`: answer commands (`first JOB`, `cont INTENT`, `report N`, and `fork first
    JOB`, `fork cont INTENT`) with JSON lines."""
    worker = Worker()
    print(json.dumps(worker.ready), flush=True)
    for line in sys.stdin:
        command, _, arg = line.strip().partition(" ")
        if command == "fork":
            command, _, arg = arg.partition(" ")
            print(json.dumps(worker.forked(command, arg)), flush=True)
            continue
        if command == "first":
            answer = worker.first(arg)
        elif command == "cont":
            answer = worker.cont(arg)
        elif command == "report":
            answer = worker.report(int(arg))
        else:
            break
        print(json.dumps(answer), flush=True)


# --- the bench --------------------------------------------------------------------------


class WorkerProcess:
    """The warm worker as a child process: one JSON answer per command."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker"],
            cwd=REPO_ROOT,
            env={**env, "PYTHONPATH": str(REPO_ROOT)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        self.ready = self.answer()

    def answer(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the worker ended; its log: {self.log.name}")
        return json.loads(line)

    def ask(self, command: str) -> dict:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.answer()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(30)
        self.log.close()


def wait_completed(store: PredictionStore, job_id: str, step: str, timeout: float):
    """The job's prediction for `step` once the bridge has recorded it completed."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        row = store.latest(job_id, step)
        if row is not None and row.state == COMPLETED:
            return row, time.time()
        time.sleep(0.01)
    raise TimeoutError(f"{job_id}/{step}: no completion recorded in {timeout:.0f}s")


def run_bench(args: argparse.Namespace) -> dict:
    """Start the stack, stop its daemon, drive the warm worker, compute the figures."""
    from wf_core.specs import load_specs

    spec = load_specs()[WORKFLOW_ID]
    steps = [s.name for s in spec.steps if s.type == "generation"]
    with replicate_stack(args.latency, private_pg=True) as bench:
        bench.stack.kill("daemon")  # no sensor, no queue, no launcher: the worker does it
        store = PredictionStore(bench.stack.state_db_url)
        worker = WorkerProcess(bench.stack.env, bench.tmp / "worker.log")
        pg = [bench.postmaster] if bench.postmaster else []
        conts: list[dict] = []
        firsts: list[dict] = []
        prefix = "fork " if args.fork else ""
        for index in range(args.jobs):
            job_id = new_job_id()
            pg0 = tree_cpu_seconds(pg)
            firsts.append(worker.ask(f"{prefix}first {job_id}"))
            firsts[-1]["pg_cpu_s"] = tree_cpu_seconds(pg) - pg0
            for number, step in enumerate(steps):
                row, seen = wait_completed(store, job_id, step, 60 + 3 * args.latency)
                pg0 = tree_cpu_seconds(pg)
                sent = time.time()
                out = worker.ask(f"{prefix}cont {row.id}")
                out["pg_cpu_s"] = tree_cpu_seconds(pg) - pg0
                recorded = store_webhook_time(bench, row.prediction_id)
                out.update(job=index, transition=number, seen=seen, sent=sent, recorded=recorded)
                if number + 1 < len(steps):
                    following = store.latest(job_id, steps[number + 1])
                    created = bench.fake.predictions[following.prediction_id].created_at
                    out["created"] = datetime.fromisoformat(created).timestamp()
                    marks = run_marks(bench.stack.instance, out["run_id"])
                    out["parts"] = segments(
                        [
                            ("webhook recorded", recorded),
                            ("bench saw it", seen),
                            ("worker got the command", out["received"]),
                            ("run created", marks["created"]),
                            ("RUN_START", marks.get("RUN_START")),
                            (f"STEP_START {step}", step_start(marks, step)),
                            (f"STEP_START {following.step}", step_start(marks, following.step)),
                            ("intent written", following.created_at),
                            ("create at provider", out["created"]),
                        ]
                    )
                conts.append(out)
            print(f"job {index + 1}/{args.jobs} done", flush=True)
        reports = worker.ask(f"report {args.reports}") if not args.fork else None
        worker.close()
        store.close()
    return summarise(args, worker.ready, firsts, conts, reports)


def store_webhook_time(bench, prediction_id: str) -> float:
    """When the bridge recorded the prediction's first webhook."""
    from transitions import webhooks_recorded

    return webhooks_recorded(bench.stack.state_db_url)[prediction_id]


def summarise(args, ready: dict, firsts: list[dict], conts: list[dict], reports) -> dict:
    """p50/p95 per path; the first continuation (cold) apart from the warm ones."""
    middle = [c for c in conts if "created" in c]  # continuations that create a prediction
    warm = middle[1:]
    last = [c for c in conts if "created" not in c]
    parts: dict[str, list[float]] = {}
    for c in warm:
        for name, seconds in c["parts"].items():
            parts.setdefault(name, []).append(seconds)
    return {
        "jobs": args.jobs,
        "latency_s": args.latency,
        "runs_in": "a child forked per run" if args.fork else "the worker process",
        "worker_start": ready,
        "first_run_wall_ms": spread([f["wall_s"] for f in firsts]),
        "b_first_continuation_webhook_recorded_to_next_create_ms": round(
            (middle[0]["created"] - middle[0]["recorded"]) * 1000, 1
        )
        if middle
        else None,
        "b_warm_webhook_recorded_to_next_create_ms": spread(
            [c["created"] - c["recorded"] for c in warm]
        ),
        "b_warm_command_to_next_create_ms": spread([c["created"] - c["sent"] for c in warm]),
        "b_warm_poll_delay_ms": spread([c["seen"] - c["recorded"] for c in warm]),
        "b_warm_breakdown_ms_p50": ms(parts, 0.5),
        "b_warm_breakdown_ms_p95": ms(parts, 0.95),
        "b_warm_continuation_wall_ms": spread([c["wall_s"] for c in warm]),
        "b_warm_continuation_cpu_ms": spread([c["cpu_s"] for c in warm]),
        "b_warm_postgres_cpu_ms": spread([c["pg_cpu_s"] for c in warm]),
        "b_final_continuation_wall_ms": spread([c["wall_s"] for c in last]),
        "b_final_continuation_cpu_ms": spread([c["cpu_s"] for c in last]),
        "b_events_per_continuation_run": spread([c["events"] for c in middle], scale=1.0),
        "b_events_per_final_run": spread([c["events"] for c in last], scale=1.0),
        "b_events_per_first_run": spread([f["events"] for f in firsts], scale=1.0),
        "b_first_run_cpu_ms": spread([f["cpu_s"] for f in firsts]),
        "c_report_wall_ms": spread(reports["wall_s"][1:]) if reports else None,
        "c_report_cpu_ms": spread(reports["cpu_s"][1:]) if reports else None,
        "b_worker_cpu_s_per_job": round(
            sum(c["cpu_s"] for c in conts + firsts) / max(1, len(firsts)), 3
        ),
        "b_postgres_cpu_s_per_job": round(
            sum(c["pg_cpu_s"] for c in conts + firsts) / max(1, len(firsts)), 3
        ),
        "all_succeeded": all(c["success"] for c in conts + firsts),
        "load_average": " ".join(f"{v:.2f}" for v in os.getloadavg()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=10)
    parser.add_argument("--latency", type=float, default=2.0, help="provider seconds per call")
    parser.add_argument("--reports", type=int, default=21, help="path (c) reports (first dropped)")
    parser.add_argument("--fork", action="store_true", help="each run in a forked child")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        serve_worker()
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    print(json.dumps(run_bench(args), indent=2))


if __name__ == "__main__":
    main()
