"""`make demo`: start Dagster and the bridge locally, run one job through the API.

Run: `.venv/bin/python scripts/demo.py [--exit] [--port 3000] [--source samples/sample.jpg]`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from runtime.stack import DagsterStack, free_port, port_is_free
from wf_core import settings
from wf_core.specs import WorkflowSpec, load_specs

DEFAULT_PORT = 3000


class Stopped(Exception):
    """SIGTERM or Ctrl-C: leave, stopping the stack on the way out."""


def _raise_stopped(signum: int, _frame: Any) -> None:
    raise Stopped(signal.Signals(signum).name)


class BridgeServer:
    """The bridge under gunicorn (threads: an SSE client holds one), for the demo."""

    def __init__(self, graphql_url: str, port: int, log: Path) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "DAGSTER_GRAPHQL_URL": graphql_url,
            "AUTH_MODE": "disabled",
            "MEDIA_DIR": str(settings.media_dir()),
            "STREAM_POLL_SECONDS": "0.25",
        }
        gunicorn = Path(sys.executable).with_name("gunicorn")
        # The production config with one worker: in-memory rate limits are then exact.
        argv = [
            str(gunicorn),
            "-c",
            "bridge_api/gunicorn_conf.py",
            "--threads",
            "8",
            "-w",
            "1",
            "-b",
            f"127.0.0.1:{port}",
            "bridge_api.wsgi:app",
        ]
        self._log = open(log, "ab")  # noqa: SIM115  (closed in stop)
        self.proc = subprocess.Popen(
            argv,
            cwd=settings.REPO_ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        """Until /healthz answers 200."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit("demo: the bridge exited; see its log")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise SystemExit("demo: the bridge did not become healthy")

    def stop(self) -> None:
        """Stop gunicorn (its whole process group)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        self._log.close()


def follow_stream(bridge: BridgeServer, job_id: str, timeout: float = 600) -> dict | None:
    """Print the job's SSE events as they come; the `complete` result, or None."""
    began = time.time()
    with httpx.stream("GET", f"{bridge.url}/jobs/{job_id}/stream", timeout=timeout) as response:
        event = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line[len("event: ") :]
            elif line.startswith("data: ") and event:
                data = json.loads(line[len("data: ") :])
                print(f"  {time.time() - began:5.1f}s  {event:10} {_describe(event, data)}")
                if event == "complete":
                    return data["result"]
                if event == "error" and not data.get("retryable"):
                    return None
    return None


def _describe(event: str, data: dict) -> str:
    if event == "progress":
        return f"{data['step_name']} {data['progress']}% {data['message']}"
    if event == "checkpoint":
        return f"step {data['step']} completed"
    if event == "error":
        retry = f", retry at {data.get('next_retry_at')}" if data.get("retryable") else ""
        return f"{data['error_type']}: {data['error']}{retry}"
    return "job completed"


def run_demo(stack: DagsterStack, bridge: BridgeServer, spec: WorkflowSpec, source: Path) -> bool:
    """Submit one job through the bridge, follow its stream, print where everything is."""
    with open(source, "rb") as image:
        response = httpx.post(
            f"{bridge.url}/workflows/execute",
            timeout=60,
            data={"workflow_id": spec.id},
            files={"file": (source.name, image)},
        )
    if response.status_code != 202:
        print(f"demo: execute answered {response.status_code}: {response.text}", file=sys.stderr)
        return False
    job = response.json()
    print(f"POST /workflows/execute -> job {job['job_id']} (run {job['execution_id']})")
    result = follow_stream(bridge, job["job_id"])
    run_url = f"{stack.ui_url}/runs/{job['execution_id']}"
    if result is None:
        print(
            f"\ndemo: the job failed; see {bridge.url}/workflows/execution/{job['job_id']} "
            f"and {run_url}",
            file=sys.stderr,
        )
        return False
    video = settings.media_dir() / f"{result['public_id']}.{result['format']}"
    print(f"\nvideo:   {video}")
    print(f"         {bridge.url}{result['video_url']}")
    print(f"job:     {bridge.url}/workflows/execution/{job['job_id']}")
    print(f"Dagster: {run_url}")
    return True


def main() -> int:
    """Parse arguments, start the stack, run the demo, then serve the UI until stopped."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exit", action="store_true", help="stop once the job has finished")
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"webserver port, if free (default {DEFAULT_PORT})",
    )
    parser.add_argument("--bridge-port", type=int, default=5000, help="bridge port, if free")
    parser.add_argument("--source", type=Path, default=settings.REPO_ROOT / "samples/sample.jpg")
    parser.add_argument("--workflow", default="img-edit-to-video")
    args = parser.parse_args()
    spec = load_specs()[args.workflow]
    port = args.port if port_is_free(args.port) else free_port()
    if port != args.port:
        print(f"port {args.port} is busy: using {port}")
    signal.signal(signal.SIGTERM, _raise_stopped)
    signal.signal(signal.SIGINT, _raise_stopped)
    home = settings.dagster_home()
    env = {
        "DAGSTER_HOME": str(home),
        "MEDIA_DIR": str(settings.media_dir()),
        # The offline models take a few seconds, as real ones take minutes: each
        # generation step parks (its run ends) and a continuation run finishes it.
        "LOCAL_PROVIDER_LATENCY": os.environ.get("LOCAL_PROVIDER_LATENCY") or "3",
    }
    stack = DagsterStack(home, env=env, port=port)
    bridge = None
    try:
        print(f"starting dagster-webserver and dagster-daemon on {home} ...")
        stack.start()
        print(f"Dagster UI at {stack.ui_url} (logs in {home}/webserver.log, daemon.log)")
        bridge_port = args.bridge_port if port_is_free(args.bridge_port) else free_port()
        bridge = BridgeServer(stack.graphql_url, bridge_port, home / "bridge.log")
        bridge.wait_ready()
        print(f"bridge API at {bridge.url} (AUTH_MODE=disabled: every request is local-dev)")
        print(f"Workflows page at {bridge.url}/ (open it in a browser)")
        if not run_demo(stack, bridge, spec, args.source):
            return 1
        if args.exit:
            return 0
        print("\nDagster and the bridge keep running: press Ctrl-C to stop")
        while bridge.proc.poll() is None and all(p.poll() is None for p in stack.procs.values()):
            time.sleep(1)
        print("demo: a Dagster process exited; see the logs above", file=sys.stderr)
        return 1
    except Stopped as stop:
        print(f"\n{stop}: stopping Dagster")
        return 0
    finally:
        # Stopping takes a few seconds; a second Ctrl-C must not skip it.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if bridge is not None:
            bridge.stop()
        stack.stop()


if __name__ == "__main__":
    raise SystemExit(main())
