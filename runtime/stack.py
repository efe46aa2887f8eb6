"""A local Dagster stack (webserver + daemon as subprocesses, and on PostgreSQL the warm
continuation worker) for tests, benches and the demo."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import dagster as dg
import httpx
from dagster_graphql import DagsterGraphQLClient

from runtime.instance import warm_worker_enabled, write_instance_yaml
from wf_core import settings
from wf_core.job_ids import JOBS_PARTITIONS_NAME
from wf_core.job_state import FINISHED
from wf_core.run_config import build_run_config
from wf_core.specs import WorkflowSpec
from wf_core.tags import job_tags
from wf_store.migrations import upgrade
from wf_store.state_db import engine_for
from wf_store.wakeups import workers_listening

BIN_DIR = Path(sys.executable).parent
LOCATION_NAME = "workflows"
TERMINAL_STATUSES = {dg.DagsterRunStatus(status) for status in FINISHED}
WORKSPACE_QUERY = """
{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""


class StackError(RuntimeError):
    """The stack did not come up (or a process died); the message carries the log tails."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port the OS reports free on `host` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether `port` can be bound on `host`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def log_tail(path: Path, lines: int = 30) -> str:
    """The last `lines` lines of a log file, or a note that it is missing."""
    if not path.is_file():
        return f"({path} not written)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) or "(empty)"


class DagsterStack:
    """dagster-webserver and dagster-daemon on one DAGSTER_HOME, sharing one code server
    (runtime.code_server, reloaded when a spec file changes), each in its own process group."""

    def __init__(
        self,
        home: Path | str,
        env: dict[str, str] | None = None,
        port: int | None = None,
        timeout: float = 120.0,
    ) -> None:
        self.home = Path(home).resolve()
        self.port = port or free_port()
        self.code_port = free_port()
        self.timeout = timeout
        self.env = {**os.environ, **(env or {}), "DAGSTER_HOME": str(self.home)}
        self.procs: dict[str, subprocess.Popen] = {}
        self._argv: dict[str, list[str]] = {}
        self._logs: list[IO[bytes]] = []
        self._instance: dg.DagsterInstance | None = None

    @property
    def graphql_url(self) -> str:
        """The webserver's GraphQL endpoint."""
        return f"http://127.0.0.1:{self.port}/graphql"

    @property
    def ui_url(self) -> str:
        """The Dagster UI root."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def instance(self) -> dg.DagsterInstance:
        """This process's handle on the stack's instance (same dagster.yaml)."""
        if self._instance is None:
            self._instance = dg.DagsterInstance.from_config(str(self.home))
        return self._instance

    def client(self) -> DagsterGraphQLClient:
        """A GraphQL client for the webserver."""
        return DagsterGraphQLClient("127.0.0.1", port_number=self.port)

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run one GraphQL query and return its `data`, raising on GraphQL errors."""
        response = httpx.post(
            self.graphql_url, json={"query": query, "variables": variables or {}}, timeout=30
        )
        response.raise_for_status()
        body = response.json()
        if body.get("errors"):
            raise StackError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    @property
    def state_db_url(self) -> str:
        """The engine's state database as the stack's processes see it."""
        return settings.state_db_url(self.home, self.env)

    def log_path(self, name: str) -> Path:
        """The log file of one process ("webserver" or "daemon")."""
        return self.home / f"{name}.log"

    def start(self) -> DagsterStack:
        """Write dagster.yaml, start both processes and wait until both are ready."""
        write_instance_yaml(self.home, self.env.get("DAGSTER_PG_URL", ""))
        # Create the storage here first: on a fresh SQLite home, the webserver and the
        # daemon would otherwise race to create the same tables and one of them fails.
        self.instance.get_runs(limit=1)
        engine = engine_for(self.state_db_url)  # the state database's tables (Alembic)
        try:
            upgrade(engine)
        finally:
            engine.dispose()
        started = time.time()
        self._spawn(
            "codeserver",
            [sys.executable, "-m", "runtime.code_server", "--port", str(self.code_port)],
        )
        try:
            self._wait_code_server(started)
        except BaseException:
            self.stop()
            raise
        workspace = ["-w", str(self.workspace_file())]
        self._spawn(
            "webserver",
            [
                str(BIN_DIR / "dagster-webserver"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                *workspace,
            ],
        )
        self._spawn("daemon", [str(BIN_DIR / "dagster-daemon"), "run", *workspace])
        if self.warm_worker:
            self._spawn("continuations", [sys.executable, "-m", "sensors.continuations"])
        try:
            self._wait_ready(started)
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def warm_worker(self) -> bool:
        """Whether this stack runs the warm continuation worker (PostgreSQL only)."""
        return warm_worker_enabled(self.env.get("DAGSTER_PG_URL"), self.env)

    def _worker_listening(self, _started: float = 0.0) -> bool:
        engine = engine_for(self.state_db_url)
        try:
            return workers_listening(engine) > 0
        except Exception:
            return False
        finally:
            engine.dispose()

    def workspace_file(self) -> Path:
        """The webserver's and the daemon's workspace: the one shared code server."""
        path = self.home / "workspace.yaml"
        path.write_text(
            "load_from:\n  - grpc_server:\n      host: 127.0.0.1\n"
            f"      port: {self.code_port}\n      location_name: {LOCATION_NAME}\n"
        )
        return path

    def _code_server_up(self) -> bool:
        from runtime.dagster_private import DagsterGrpcClient  # the server's own client

        try:
            DagsterGrpcClient(host="127.0.0.1", port=self.code_port).ping("up")
        except Exception:
            return False
        return True

    def _wait_code_server(self, started: float) -> None:
        deadline = started + self.timeout
        while not self._code_server_up():
            if self.procs["codeserver"].poll() is not None:
                self._fail("codeserver exited")
            if time.time() > deadline:
                self._fail("timed out waiting for the code server")
            time.sleep(0.25)

    def kill(self, name: str) -> None:
        """SIGKILL one process group we started ("webserver", "daemon" with its run
        workers, "codeserver", or "continuations", the warm worker): a host crash, for
        drills and tests."""
        self.signal(name, signal.SIGKILL)

    def signal(self, name: str, sig: signal.Signals, grace: float = 30.0) -> None:
        """Send `sig` to one process group and wait for its leader to exit (a stop for
        a deploy with SIGTERM; SIGKILL after `grace` if it is still there)."""
        proc = self.procs[name]
        _signal_group(proc.pid, sig)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()

    def restart(self, name: str) -> None:
        """Start a killed process again, as a supervisor would, and wait until it is ready."""
        started = time.time()
        self._spawn(name, self._argv[name])
        if name == "codeserver":
            # Ready once it answers: the webserver and the daemon (if up) find it by
            # themselves, and either may be down at this moment (a deploy).
            self._wait_code_server(started)
            return
        checks: dict[str, Callable[[float], bool]] = {
            "daemon": self._daemon_heartbeating,
            "continuations": self._worker_listening,
        }
        ready = checks.get(name, lambda _: self._location_loaded())
        deadline = started + self.timeout
        while not ready(started):
            if self.procs[name].poll() is not None or time.time() > deadline:
                self._fail(f"{name} did not come back")
            time.sleep(0.25)

    def _spawn(self, name: str, argv: list[str]) -> None:
        self._argv[name] = argv
        log = self.log_path(name).open("ab")
        self._logs.append(log)
        self.procs[name] = subprocess.Popen(
            argv,
            cwd=settings.REPO_ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def _wait_ready(self, started: float) -> None:
        deadline = started + self.timeout
        web_ready = daemon_ready = False
        worker_ready = "continuations" not in self.procs
        while not (web_ready and daemon_ready and worker_ready):
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    self._fail(f"{name} exited with code {proc.returncode}")
            if time.time() > deadline:
                states = (("webserver", web_ready), ("daemon", daemon_ready))
                waiting = [n for n, ok in (*states, ("continuations", worker_ready)) if not ok]
                self._fail(f"timed out after {self.timeout:.0f}s waiting for {', '.join(waiting)}")
            web_ready = web_ready or self._location_loaded()
            daemon_ready = daemon_ready or self._daemon_heartbeating(started)
            worker_ready = worker_ready or self._worker_listening()
            time.sleep(0.25)

    def _location_loaded(self) -> bool:
        try:
            data = self.graphql(WORKSPACE_QUERY)
        except (httpx.HTTPError, ValueError):
            return False
        for entry in data["workspaceOrError"].get("locationEntries", []):
            if entry["name"] != LOCATION_NAME or entry["loadStatus"] != "LOADED":
                continue
            loaded = entry["locationOrLoadError"] or {}
            if loaded.get("__typename") == "PythonError":
                self._fail(f"code location failed to load: {loaded.get('message')}")
            return True
        return False

    def _daemon_heartbeating(self, started: float) -> bool:
        # Only heartbeats written since we started count: a reused home keeps old ones.
        beats = self.instance.get_daemon_heartbeats()
        required = self.instance.get_required_daemon_types()
        return all(t in beats and beats[t].timestamp >= started - 1 for t in required)

    def _fail(self, reason: str) -> None:
        tails = "\n".join(
            f"--- {name}.log (tail) ---\n{log_tail(self.log_path(name))}" for name in self.procs
        )
        raise StackError(f"Dagster stack on {self.home}: {reason}\n{tails}")

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the process groups we started, then SIGKILL what is left after `grace`."""
        for proc in self.procs.values():
            _signal_group(proc.pid, signal.SIGTERM)
        deadline = time.time() + grace
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                pass
        # Children (code servers, run workers) share the group and may outlive the leader.
        while time.time() < deadline and any(_group_alive(p.pid) for p in self.procs.values()):
            time.sleep(0.1)
        for proc in self.procs.values():
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
        self.procs.clear()
        for log in self._logs:
            log.close()
        self._logs.clear()
        if self._instance is not None:
            self._instance.dispose()
            self._instance = None

    def __enter__(self) -> DagsterStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def add_job_partition(self, job_id: str) -> None:
        """Register `job_id` in the "jobs" dynamic partitions (a no-op if it exists)."""
        self.instance.add_dynamic_partitions(JOBS_PARTITIONS_NAME, [job_id])

    def submit_job(
        self,
        spec: WorkflowSpec,
        job_id: str,
        source: str | Path,
        options: dict[str, Any] | None = None,
        user: str = "local-dev",
        launched_by: str = "dagster-stack",
    ) -> str:
        """Submit the workflow's job for an existing partition through GraphQL; the run id."""
        return self.client().submit_job_execution(
            spec.job_name,
            repository_location_name=LOCATION_NAME,
            run_config=build_run_config(spec, options, source=str(Path(source).resolve())),
            tags=job_tags(spec.id, job_id, user, launched_by),
        )

    def launch_job(
        self,
        spec: WorkflowSpec,
        job_id: str,
        source: str | Path,
        options: dict[str, Any] | None = None,
        user: str = "local-dev",
        launched_by: str = "dagster-stack",
    ) -> str:
        """Add the job's partition, then submit its run through GraphQL; the run id."""
        self.add_job_partition(job_id)
        return self.submit_job(spec, job_id, source, options, user, launched_by)

    def wait_for_run(
        self, run_id: str, timeout: float = 120.0, poll: float = 0.1
    ) -> dg.DagsterRunStatus:
        """Poll the run's status over GraphQL until it is terminal; raise on timeout."""
        client = self.client()
        deadline = time.time() + timeout
        while True:
            status = client.get_run_status(run_id)
            if status in TERMINAL_STATUSES:
                return status
            if time.time() > deadline:
                raise TimeoutError(f"run {run_id} still {status.value} after {timeout:.0f}s")
            time.sleep(poll)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
