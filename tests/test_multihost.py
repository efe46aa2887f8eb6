"""Run workers on two hosts that share nothing but PostgreSQL, the broker and the provider.

Each worker host is a network namespace joined to this one by a veth link, with a mount
namespace and hostname of its own and a private tmpfs over its DAGSTER_HOME (checkpoints)
and media folder: neither sees the other's files, and there is no shared folder. They
reach PostgreSQL, Redis and the fake Cloudinary through relays on a service address of
ours (the machine's servers keep listening on 127.0.0.1 only). The daemon and webserver
run here, as the control host. Uploads are in the database, media in (fake) Cloudinary.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import psycopg2
import pytest
import redis
from celery import Celery

from runtime.stack import LOCATION_NAME, DagsterStack, free_port
from tests.conftest import migrated
from tests.fakes.cloudinary_server import FakeCloudinary
from tests.netns_hosts import HostNetwork, TcpRelay, netns_unavailable
from wf_assets.asset_keys import asset_key_for
from wf_assets.job_runs import load_job_state
from wf_core import tags as t
from wf_core.job_ids import new_job_id
from wf_core.run_config import build_run_config
from wf_core.settings import REPO_ROOT
from wf_core.specs import WorkflowSpec, load_specs
from wf_core.tags import job_tags
from wf_store.state_db import engine_for
from wf_store.uploads import UploadStore

WHY_NOT = netns_unavailable()
pytestmark = [
    pytest.mark.stack,
    pytest.mark.timeout(900),
    pytest.mark.skipif(WHY_NOT is not None, reason=f"multi-host test: {WHY_NOT}"),
]

HOSTS = ("wf-host-a", "wf-host-b")
PG_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
# One multi-host test at a time per machine: host names and subnets are fixed.
LOCK_FILE = Path(tempfile.gettempdir()) / "wf-multihost.lock"
LATENCY = 3.0


@dataclass
class Cluster:
    """The control host's stack, the worker hosts and what they share."""

    stack: DagsterStack
    net: HostNetwork
    spec: WorkflowSpec
    pg_url: str
    calls: Path
    faults: Path
    hostfs: Path
    worker_env: dict[str, str]
    logs: Path
    broker: str
    workers: dict[str, subprocess.Popen] = field(default_factory=dict)

    def start_worker(self, host: str) -> None:
        """Start the host's worker (a fresh tmpfs each time) and wait until it answers."""
        argv = [str(REPO_ROOT / ".venv/bin/wf-worker"), "--concurrency", "2"]
        command = self.net.host_command(host, [str(self.hostfs)], argv)
        with (self.logs / f"{host}.log").open("ab") as log:
            self.workers[host] = subprocess.Popen(
                command,
                env=self.worker_env,
                cwd=REPO_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for_nodes({f"wf@{host}"}, self, timeout=60)

    def kill_worker(self, host: str) -> None:
        """SIGKILL the host's worker and every run process in it (a host that died)."""
        proc = self.workers.pop(host)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()

    def submit(self, job_id: str) -> str:
        """Submit a job as the bridge does with the celery profile: upload in the database."""
        self.stack.add_job_partition(job_id)
        store = UploadStore(engine_for(migrated(self.pg_url)))
        source = store.put(job_id, (REPO_ROOT / "samples" / "sample.jpg").read_bytes(), "jpg")
        store.close()
        return self.stack.client().submit_job_execution(
            self.spec.job_name,
            repository_location_name=LOCATION_NAME,
            run_config=build_run_config(self.spec, None, source),
            tags=job_tags(self.spec.id, job_id, "multihost", "test"),
        )

    def wait_for_jobs(self, job_ids: list[str], timeout: float) -> dict[str, str]:
        """Poll until every job is final; their statuses."""
        deadline = time.monotonic() + timeout
        statuses: dict[str, str] = {}
        while True:
            for job_id in job_ids:
                statuses[job_id] = load_job_state(self.stack.instance, self.spec, job_id).status
            if all(s in ("completed", "failed", "cancelled") for s in statuses.values()):
                return statuses
            if time.monotonic() > deadline:
                raise TimeoutError(f"jobs not final after {timeout:.0f}s: {statuses}")
            time.sleep(0.5)

    def created_calls(self, job_id: str) -> list[str]:
        """The steps the provider was asked to create a prediction for, for one job."""
        if not self.calls.exists():
            return []
        lines = [json.loads(line) for line in self.calls.read_text().splitlines() if line]
        return sorted(c["step"] for c in lines if c["job_id"] == job_id and c["created"])

    def runs_of(self, job_id: str) -> list[dg.DagsterRun]:
        """Every run of one job."""
        return list(self.stack.instance.get_runs(dg.RunsFilter(tags={t.JOB_ID: job_id})))

    def materializations(self, job_id: str, step: str) -> int:
        """How many times a step of the job was materialized (a re-run would make two)."""
        records = self.stack.instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=asset_key_for(self.spec, step), asset_partitions=[job_id]
            ),
            limit=10,
        ).records
        return len(records)


def wait_for_nodes(nodes: set[str], cluster: Cluster, timeout: float) -> None:
    """Until every Celery node named answers a ping through the broker."""
    app = Celery(broker=cluster.broker)
    deadline = time.monotonic() + timeout
    try:
        while True:
            answered = {name for reply in app.control.ping(timeout=1.0) or [] for name in reply}
            if nodes <= answered:
                return
            if time.monotonic() > deadline:
                tails = {h: _tail(cluster.logs / f"{h}.log") for h in HOSTS}
                raise TimeoutError(f"workers {nodes - answered} never answered: {tails}")
            time.sleep(0.5)
    finally:
        app.close()


def _tail(path: Path) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-15:]) if path.exists() else ""


def _server_sql(statement: str) -> None:
    conn = psycopg2.connect(PG_SERVER)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(statement)
    conn.close()


@contextmanager
def private_redis(folder: Path) -> Iterator[int]:
    """A Redis server of this test's own (the broker), on a free loopback port."""
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        client = redis.Redis(host="127.0.0.1", port=port)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextmanager
def machine_lock() -> Iterator[None]:
    """Wait for any other multi-host test on this machine to finish."""
    with LOCK_FILE.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Two worker hosts and a control host; everything made is removed, even on failure."""
    root = tmp_path_factory.mktemp("multihost")
    db = f"wf_multihost_{uuid.uuid4().hex[:10]}"
    suffix = os.getpid() % 1000
    net = HostNetwork(HOSTS, net=200 + os.getpid() % 50, prefix=f"wfm{suffix}")
    relays: list[TcpRelay] = []
    cluster_: Cluster | None = None
    if shutil.which("redis-server") is None:
        pytest.skip("multi-host test: redis-server is not installed")
    _server_sql(f'CREATE DATABASE "{db}"')
    try:
        with (
            machine_lock(),
            private_redis(root) as redis_port,
            FakeCloudinary() as cloud,
            pytest.MonkeyPatch.context() as mp,
        ):
            net.open()
            cloud_port = int(cloud.base_url.rsplit(":", 1)[1])
            for port in (5432, redis_port, cloud_port):
                relays.append(TcpRelay(net.service_ip, port))
            shared_media = f"http://{net.service_ip}:{cloud_port}"
            cloud.account.delivery_base = shared_media
            provider = root / "provider"  # the provider's own state, not a host's disk
            provider.mkdir()
            common = {
                "RUN_LAUNCHER": "celery",
                "RUN_MONITORING_INTERVAL": "2",
                "UPLOAD_STORE": "db",
                "CLOUDINARY_URL": cloud.account_url(),
                "CLOUDINARY_UPLOAD_PREFIX": shared_media,
                "LOCAL_PROVIDER_LATENCY": str(LATENCY),
                "LOCAL_PROVIDER_CALL_LOG": str(provider / "calls.jsonl"),
                "LOCAL_PROVIDER_FAULTS": str(provider / "faults.json"),
                "MAX_CONCURRENT_RUNS": "8",
            }
            local = {
                **common,
                "DAGSTER_PG_URL": f"postgresql://postgres@127.0.0.1:5432/{db}",
                "CELERY_BROKER_URL": f"redis://127.0.0.1:{redis_port}/0",
            }
            for key, value in local.items():
                mp.setenv(key, value)
            mp.delenv("WF_STATE_DB_URL", raising=False)
            mp.delenv("CHECKPOINT_URL", raising=False)
            hostfs = root / "hostfs"  # the same path on both hosts, a private tmpfs on each
            hostfs.mkdir()
            worker_env = {
                **os.environ,
                "DAGSTER_PG_URL": f"postgresql://postgres@{net.service_ip}:5432/{db}",
                "CELERY_BROKER_URL": f"redis://{net.service_ip}:{redis_port}/0",
                "DAGSTER_HOME": str(hostfs / "home"),
                "MEDIA_DIR": str(hostfs / "media"),
            }
            stack = DagsterStack(root / "control", env=local, timeout=120)
            logs = root / "logs"
            logs.mkdir()
            cluster_ = Cluster(
                stack=stack,
                net=net,
                spec=load_specs()["img-edit-to-video"],
                pg_url=local["DAGSTER_PG_URL"],
                calls=provider / "calls.jsonl",
                faults=provider / "faults.json",
                hostfs=hostfs,
                worker_env=worker_env,
                logs=logs,
                broker=local["CELERY_BROKER_URL"],
            )
            stack.start()
            for host in HOSTS:
                cluster_.start_worker(host)
            yield cluster_
    finally:
        if cluster_ is not None:
            for host in list(cluster_.workers):
                cluster_.kill_worker(host)
            cluster_.stack.stop()
        for relay in relays:
            relay.close()
        net.close()
        _server_sql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        assert not net.leftovers(), f"namespaces or links left behind: {net.leftovers()}"


def worker_host(run: dg.DagsterRun) -> str | None:
    """The host of the worker that last ran a step of this run."""
    identity = run.tags.get(t.WORKER)
    return identity.rsplit(":", 2)[0] if identity else None


def test_jobs_spread_over_both_hosts_and_complete(cluster: Cluster) -> None:
    jobs = [new_job_id() for _ in range(6)]
    for job_id in jobs:
        cluster.submit(job_id)
    statuses = cluster.wait_for_jobs(jobs, timeout=300)
    assert set(statuses.values()) == {"completed"}, statuses
    hosts = {worker_host(run) for job_id in jobs for run in cluster.runs_of(job_id)}
    assert set(HOSTS) <= hosts, hosts
    for job_id in jobs:
        # Each prediction created once; each step stored once.
        assert cluster.created_calls(job_id) == ["image_edit", "video_generation"]
        for step in ("upload", "image_edit", "video_generation"):
            assert cluster.materializations(job_id, step) == 1


def test_a_host_killed_mid_step_is_resumed_on_the_other(cluster: Cluster) -> None:
    # The edit's create call hangs at the provider: its worker is killed right there.
    cluster.faults.write_text(json.dumps({"image_edit": {"delay": 60, "times": 1}}))
    job_id = new_job_id()
    run_id = cluster.submit(job_id)
    deadline = time.monotonic() + 120
    while cluster.created_calls(job_id) != ["image_edit"]:
        assert time.monotonic() < deadline, "the edit's create was never called"
        time.sleep(0.2)
    run = cluster.stack.instance.get_run_by_id(run_id)
    assert run is not None and run.status == dg.DagsterRunStatus.STARTED
    victim = worker_host(run)
    assert victim in HOSTS
    cluster.kill_worker(victim)
    survivor = next(h for h in HOSTS if h != victim)

    statuses = cluster.wait_for_jobs([job_id], timeout=240)
    assert statuses[job_id] == "completed", statuses
    resumed = cluster.stack.instance.get_run_by_id(run_id)
    assert resumed is not None and resumed.status == dg.DagsterRunStatus.SUCCESS
    messages = [e.message or "" for e in cluster.stack.instance.all_logs(run_id)]
    assert any(m.startswith(f"Resuming on {survivor}") for m in messages), messages[-20:]
    # No step ran twice: the upload stored once, the edit's prediction created once.
    starts = cluster.stack.instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_START)
    assert sorted(e.step_key or "" for e in starts).count("img_edit_to_video__upload") == 1
    assert cluster.created_calls(job_id) == ["image_edit", "video_generation"]
    for step in ("upload", "image_edit", "video_generation"):
        assert cluster.materializations(job_id, step) == 1
    cluster.start_worker(victim)


def test_a_daemon_killed_and_restarted_loses_no_job(cluster: Cluster) -> None:
    cluster.faults.write_text("{}")
    jobs = [new_job_id() for _ in range(4)]
    for job_id in jobs:
        cluster.submit(job_id)
    # Kill it once work is in flight: some runs started, predictions parked.
    deadline = time.monotonic() + 60
    while not any(cluster.created_calls(job_id) for job_id in jobs):
        assert time.monotonic() < deadline, "no job got as far as its first prediction"
        time.sleep(0.2)
    cluster.stack.kill("daemon")
    time.sleep(3)
    cluster.stack.restart("daemon")
    statuses = cluster.wait_for_jobs(jobs, timeout=300)
    assert set(statuses.values()) == {"completed"}, statuses
    for job_id in jobs:
        assert cluster.created_calls(job_id) == ["image_edit", "video_generation"]
        for step in ("upload", "image_edit", "video_generation"):
            assert cluster.materializations(job_id, step) == 1
