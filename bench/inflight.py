"""N jobs in flight at once, each waiting on its provider: what does waiting cost?

A real stack on PostgreSQL (dagster-webserver, dagster-daemon, the bridge under gunicorn
for the webhook receiver), the loopback Replicate fake making each prediction take L
seconds and calling `/hooks/replicate` when it ends (signed like Replicate). N jobs of
`img-edit-to-video` (two generation steps) are submitted at once; the bench samples the
whole stack every second until every job is final and prints:
- peak PSS (sum of /proc/<pid>/smaps_rollup Pss over the stack's processes and the
  PostgreSQL server's) and peak process count;
- time until the last job completes; median job time / the provider's own time (2 L);
- runs per job; CPU-seconds per job (every process of the stack and PostgreSQL, from
  /proc/stat, minus this bench's own process which hosts the fake provider);
- predictions created / predictions needed.
`--drop-webhooks` drops every webhook: completion by polling only.
`--provider local` uses the offline provider instead (it renders real media in the
stack, so its CPU counts; it has no webhooks: the poller completes it).

`--private-pg` runs a PostgreSQL server of the bench's own (initdb as the postgres user,
on a free port): CPU is then the stack's processes plus that server's, and the peak of
open connections is sampled from its pg_stat_activity, whatever else the machine runs.
`--pg-pool off` sets PG_POOL=off (dagster-postgres' own NullPool: a connection per
statement), for the before/after figure of pooling.

Run: `.venv/bin/python bench/inflight.py --jobs 100 --latency 60 [--drop-webhooks]
[--private-pg --pg-pool off]`. Without --private-pg, needs nothing else running on the
machine (CPU is read machine-wide).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg2
from procfs import TICK, process_tree, pss_bytes, tree_cpu_seconds

from runtime.stack import DagsterStack, free_port
from wf_assets.job_runs import load_job_state, run_view
from wf_core import tags as t
from wf_core.job_ids import new_job_id
from wf_core.job_state import counted_runs
from wf_core.settings import REPO_ROOT
from wf_core.specs import WorkflowSpec, load_specs

sys.path.insert(0, str(REPO_ROOT))
from tests.fakes.replicate_server import FakeReplicate, Script  # noqa: E402
from wf_core.models import MODELS  # noqa: E402

WORKFLOW_ID = "img-edit-to-video"
SAMPLE = REPO_ROOT / "samples" / "sample.jpg"
PG_SERVER = os.environ.get("TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
TOKEN = "r8_bench_token"
FINAL = ("completed", "failed", "cancelled")
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))


def server_sql(statement: str, server: str = PG_SERVER) -> None:
    """One statement on the server's maintenance connection."""
    conn = psycopg2.connect(server)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(statement)
    conn.close()


@contextmanager
def fresh_database(server: str = PG_SERVER, prefix: str = "wf_bench") -> Iterator[str]:
    """A new PostgreSQL database on `server`, dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    server_sql(f'CREATE DATABASE "{name}"', server)
    try:
        yield f"{server.rsplit('/', 1)[0]}/{name}"
    finally:
        server_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', server)


@contextmanager
def private_cluster(tmp: Path) -> Iterator[tuple[str, int]]:
    """A PostgreSQL server of the bench's own (initdb, run as the postgres user, on a free
    port): its CPU and connections are this bench's alone, whatever else the machine runs.
    Yields (database URL, postmaster pid)."""
    bindir = sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1]
    data = tmp / "pgdata"
    data.mkdir()
    shutil.chown(data, "postgres", "postgres")
    as_pg = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [*as_pg, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
        check=True,
        capture_output=True,
    )
    port = free_port()
    opts = f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c max_connections=400"
    # A log file, not a pipe: the server would hold a captured pipe open and the wait
    # for pg_ctl's output would never end.
    logfile = data / "server.log"
    subprocess.run(
        [
            *as_pg,
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            opts,
            "-l",
            str(logfile),
            "-w",
            "start",
        ],  # fmt: skip
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        pid = int((data / "postmaster.pid").read_text().split()[0])
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres", pid
    finally:
        subprocess.run(
            [*as_pg, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


def pg_connections(url: str) -> int:
    """Connections open to the server now (client backends)."""
    conn = psycopg2.connect(url)
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'")
        (count,) = cur.fetchone()
    conn.close()
    return int(count) - 1  # not this one


def postgres_pids() -> list[int]:
    """The PostgreSQL server's processes (postmaster and every backend)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() in ("postgres", "postmaster"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def machine_busy_seconds() -> float:
    """CPU-seconds spent by every process since boot (user+nice+system+irq+softirq)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in fields[:7])
    return (user + nice + system + irq + softirq) / TICK


def pg_sessions(url: str) -> int:
    """Connections ever opened to the database (pg_stat_database.sessions)."""
    conn = psycopg2.connect(url)
    with conn.cursor() as cur:
        cur.execute("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
        (count,) = cur.fetchone()
    conn.close()
    return int(count)


def own_cpu_seconds() -> float:
    """This process's CPU (the fake provider, the sampler, the submitters)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Sampler(threading.Thread):
    """Every second: PSS and process count of the stack plus PostgreSQL."""

    def __init__(self, roots: list[int], pg_url: str | None = None) -> None:
        super().__init__(daemon=True)
        self.roots = roots
        self.pg_url = pg_url  # a private cluster: its connections are counted
        self.peak_connections = 0
        self.peak_pss = 0
        self.peak_procs = 0
        self.peak_stack_procs = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            stack = set(process_tree(self.roots))
            pids = stack | set(postgres_pids())
            self.peak_procs = max(self.peak_procs, len(pids))
            self.peak_stack_procs = max(self.peak_stack_procs, len(stack))
            self.peak_pss = max(self.peak_pss, pss_bytes(pids))
            if self.pg_url:
                self.peak_connections = max(self.peak_connections, pg_connections(self.pg_url))
            self.stop.wait(1.0)


def job_statuses(stack: DagsterStack, spec: WorkflowSpec) -> dict[str, tuple[str, int, float]]:
    """(status, runs, end time) of every job, from one read of all runs (not per job: the
    bench must not load the database it measures)."""
    by_job: dict[str, list] = {}
    ends: dict[str, float] = {}
    cursor = None
    while True:
        page = stack.instance.get_run_records(limit=1000, cursor=cursor)
        for record in page:
            view = run_view(record)
            by_job.setdefault(view.tags.get(t.JOB_ID, ""), []).append(view)
            if record.end_time:
                ends[view.run_id] = record.end_time
        if len(page) < 1000:
            break
        cursor = page[-1].dagster_run.run_id
    found = {}
    for job_id, runs in by_job.items():
        counted = counted_runs(runs)
        latest = counted[0]
        if latest.status == "SUCCESS" and not latest.parked_step:
            found[job_id] = ("completed", len(runs), ends.get(latest.run_id, time.time()))
            continue
        if latest.status in ("FAILURE", "CANCELED"):
            # Rare: read the job's checkpoints too (a run can fail after its last step).
            state = load_job_state(stack.instance, spec, job_id)
            end = ends.get(latest.run_id, time.time())
            if state.status in FINAL:
                found[job_id] = (state.status, len(runs), end)
                continue
        found[job_id] = ("running", len(runs), 0.0)
    return found


@dataclass
class BenchStack:
    """A running stack under a bench: Dagster on PostgreSQL, the bridge, the fake provider."""

    stack: DagsterStack
    fake: FakeReplicate
    roots: list[int]  # the stack's and the bridge's processes (their trees are the stack)
    pg_url: str
    postmaster: int | None  # a private cluster's server process, else None
    bridge_url: str
    tmp: Path


@contextmanager
def replicate_stack(
    latency: float,
    private_pg: bool = False,
    provider: str = "replicate",
    extra_env: dict[str, str] | None = None,
) -> Iterator[BenchStack]:
    """DagsterStack on a fresh PostgreSQL database (or a private cluster), the bridge under
    gunicorn as the webhook receiver, and the loopback Replicate making each prediction
    take `latency` seconds and calling the bridge back (signed) when it ends."""
    models = {m.provider_model.partition(":")[0] for m in MODELS.values()}
    videos = {
        m.provider_model.partition(":")[0] for m in MODELS.values() if "image_to_video" in m.tasks
    }
    with (
        tempfile.TemporaryDirectory(prefix="bench-stack-") as tmp_name,
        FakeReplicate(TOKEN, models, videos) as fake,
        ExitStack() as cleanup,
    ):
        tmp = Path(tmp_name)
        postmaster = None
        if private_pg:
            os.chmod(tmp, 0o755)  # the postgres user reaches its data folder
            pg_url, postmaster = cleanup.enter_context(private_cluster(tmp))
        else:
            pg_url = cleanup.enter_context(fresh_database())
        fake.script = Script(seconds=latency)
        hook_port = free_port()
        env = {
            **os.environ,
            "DAGSTER_PG_URL": pg_url,
            "MEDIA_DIR": str(tmp / "media"),
            "AUTH_MODE": "disabled",
            "REPLICATE_WEBHOOK_SECRET": fake.webhook_secret,
            "WEB_CONCURRENCY": "1",
            **(extra_env or {}),
        }
        if provider == "replicate":
            env["REPLICATE_API_TOKEN"] = TOKEN
            env["REPLICATE_API_BASE_URL"] = fake.base_url
            env["PUBLIC_BASE_URL"] = f"http://127.0.0.1:{hook_port}"
        else:
            env["LOCAL_PROVIDER_LATENCY"] = str(latency)
        env.pop("DAGSTER_HOME", None)
        with DagsterStack(tmp / "home", env=env, timeout=120) as stack:
            bridge_env = {**stack.env, "DAGSTER_GRAPHQL_URL": stack.graphql_url}
            with bridge_on(bridge_env, tmp, hook_port) as bridge_proc:
                roots = [p.pid for p in stack.procs.values()] + [bridge_proc.pid]
                yield BenchStack(
                    stack, fake, roots, pg_url, postmaster, f"http://127.0.0.1:{hook_port}", tmp
                )


def run_bench(args: argparse.Namespace) -> dict:
    """One whole measurement; returns the figures."""
    spec = load_specs()[WORKFLOW_ID]
    if args.pg_pool is not None:
        os.environ["PG_POOL"] = args.pg_pool
    env = {"MAX_CONCURRENT_RUNS": str(args.concurrency)}
    with replicate_stack(args.latency, args.private_pg, args.provider, env) as bench:
        if args.drop_webhooks:
            bench.fake.drop_all_webhooks = True
        return measure(
            args, spec, bench.stack, bench.fake, bench.roots, bench.pg_url, bench.postmaster
        )


@contextmanager
def bridge_on(env: dict[str, str], tmp: Path, port: int) -> Iterator[subprocess.Popen]:
    """The bridge on a given port (the fake calls `PUBLIC_BASE_URL/hooks/replicate`)."""
    log = (tmp / "bridge.log").open("wb")
    proc = subprocess.Popen(
        [GUNICORN, "-c", "bridge_api/gunicorn_conf.py", "-b", f"127.0.0.1:{port}"]
        + ["bridge_api.wsgi:app"],
        cwd=REPO_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
            break
        except httpx.HTTPError:
            time.sleep(0.3)
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()


def measure(
    args: argparse.Namespace,
    spec: WorkflowSpec,
    stack: DagsterStack,
    fake: FakeReplicate,
    roots: list[int],
    pg_url: str,
    postmaster: int | None,
) -> dict:
    """Submit N jobs at once, sample until all are final, compute the figures."""
    sampler = Sampler(roots, pg_url if postmaster else None)
    sampler.start()
    cpu0, own0 = machine_busy_seconds(), own_cpu_seconds()
    pg_roots = [postmaster] if postmaster else []
    tree0, sessions0 = tree_cpu_seconds(roots), pg_sessions(pg_url)
    pg0 = tree_cpu_seconds(pg_roots)
    started = time.time()
    job_ids = [new_job_id() for _ in range(args.jobs)]
    submitted: dict[str, float] = {}

    def submit(job_id: str) -> None:
        stack.launch_job(spec, job_id, SAMPLE, user=f"user-{job_id[-2:]}")
        submitted[job_id] = time.time()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(submit, job_ids))
    print(f"submitted {args.jobs} jobs in {time.time() - started:.1f}s", flush=True)
    finished: dict[str, tuple[str, int, float]] = {}
    deadline = started + args.timeout
    while len(finished) < len(job_ids) and time.time() < deadline:
        for job_id, seen in job_statuses(stack, spec).items():
            if job_id in submitted and job_id not in finished and seen[0] in FINAL:
                finished[job_id] = seen
        print(
            f"t={time.time() - started:6.0f}s final {len(finished)}/{len(job_ids)}"
            f" peak PSS {sampler.peak_pss / 2**30:.2f} GiB procs {sampler.peak_procs}",
            flush=True,
        )
        time.sleep(5)
    cpu = machine_busy_seconds() - cpu0 - (own_cpu_seconds() - own0)
    tree = tree_cpu_seconds(roots) - tree0
    sessions = pg_sessions(pg_url) - sessions0
    if postmaster:  # the stack's and its own server's CPU, not the whole machine's
        cpu = tree + tree_cpu_seconds(pg_roots) - pg0
    sampler.stop.set()
    sampler.join()
    completed = [j for j, f in finished.items() if f[0] == "completed"]
    times = [finished[j][2] - submitted[j] for j in completed]
    needed = 2 * len(job_ids)
    return {
        "jobs": args.jobs,
        "latency_s": args.latency,
        "provider": args.provider,
        "webhooks": not args.drop_webhooks and args.provider == "replicate",
        "concurrency": args.concurrency,
        "completed": len(completed),
        "final": len(finished),
        "last_done_s": round(max((finished[j][2] for j in completed), default=started) - started),
        "median_job_s": round(statistics.median(times), 1) if times else None,
        "median_over_provider": round(statistics.median(times) / (2 * args.latency), 2)
        if times
        else None,
        "runs_per_job": round(sum(f[1] for f in finished.values()) / max(1, len(finished)), 2),
        "cpu_s_per_job": round(cpu / max(1, len(completed)), 3),
        "cpu_s_per_job_without_postgres": round(tree / max(1, len(completed)), 3),
        "pg_connections_per_job": round(sessions / max(1, len(completed)), 1),
        "jobs_per_min_cpu_bound": round(60 * os.cpu_count() / (cpu / max(1, len(completed))), 1)
        if completed
        else None,
        "peak_pss_gib": round(sampler.peak_pss / 2**30, 2),
        "peak_processes": sampler.peak_procs,
        "peak_processes_without_postgres": sampler.peak_stack_procs,
        "peak_pg_connections": sampler.peak_connections if postmaster else None,
        "pg_pool": os.environ.get("PG_POOL", "on"),
        "predictions_created": fake.created_count() if args.provider == "replicate" else None,
        "predictions_needed": needed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--latency", type=float, default=60.0, help="provider seconds per call")
    parser.add_argument("--concurrency", type=int, default=6, help="MAX_CONCURRENT_RUNS")
    parser.add_argument("--provider", choices=("replicate", "local"), default="replicate")
    parser.add_argument("--drop-webhooks", action="store_true", help="polling only")
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument(
        "--private-pg",
        action="store_true",
        help="a PostgreSQL server of the bench's own (CPU and peak connections are its alone)",
    )
    parser.add_argument("--pg-pool", choices=("on", "off"), help="PG_POOL for the stack")
    args = parser.parse_args()
    # A SIGTERM unwinds the stack, the bridge and the database like Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    print(json.dumps(run_bench(args), indent=2))


if __name__ == "__main__":
    main()
