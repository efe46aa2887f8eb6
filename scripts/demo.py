"""`make demo`: start Dagster locally, run one img-edit-to-video job, keep the UI up.

Run: `.venv/bin/python scripts/demo.py [--exit] [--port 3000] [--source samples/sample.jpg]`.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from typing import Any

import dagster as dg

from wf_assets import settings
from wf_assets.factory import asset_key_for
from wf_assets.partitions import new_job_id
from wf_assets.specs import WorkflowSpec, load_specs
from wf_assets.stack import TERMINAL_STATUSES, DagsterStack, free_port, port_is_free
from wf_assets.tags import ERROR_TYPE, FAILED_STEP

DEFAULT_PORT = 3000
POLL_SECONDS = 0.25


class Stopped(Exception):
    """SIGTERM or Ctrl-C: leave, stopping the stack on the way out."""


def _raise_stopped(signum: int, _frame: Any) -> None:
    raise Stopped(signal.Signals(signum).name)


def checkpoint_of(
    stack: DagsterStack, spec: WorkflowSpec, step: str, job_id: str
) -> dict[str, Any] | None:
    """The checkpoint a step materialized for `job_id`, or None if not yet."""
    records = stack.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key_for(spec, step), asset_partitions=[job_id]),
        limit=1,
    ).records
    if not records:
        return None
    return records[0].asset_materialization.metadata["checkpoint"].value


def follow_run(
    stack: DagsterStack, spec: WorkflowSpec, job_id: str, run_id: str, timeout: float = 600
) -> dict[str, dict[str, Any]]:
    """Print status changes and each step as it materializes; the checkpoints by step."""
    began, status, done = time.time(), None, {}

    def show(message: str) -> None:
        print(f"  {time.time() - began:5.1f}s  {message}")

    while True:
        run = stack.instance.get_run_by_id(run_id)
        current = run.status if run is not None else None
        # A terminal status is printed after the steps it ends, the others before.
        if current != status and current not in TERMINAL_STATUSES:
            status = current
            show(f"run {current.value}")
        for index, step in enumerate(spec.steps, start=1):
            if step.name not in done:
                checkpoint = checkpoint_of(stack, spec, step.name, job_id)
                if checkpoint is not None:
                    done[step.name] = checkpoint
                    show(f"step {index}/{len(spec.steps)} {step.name} materialized")
        if current != status:
            status = current
            show(f"run {current.value}")
        if status in TERMINAL_STATUSES:
            return done
        if time.time() - began > timeout:
            raise SystemExit(f"demo: run {run_id} still {status} after {timeout:.0f}s")
        time.sleep(POLL_SECONDS)


def media_file(checkpoint: dict[str, Any]) -> Path:
    """The local file a step's output was stored as, under MEDIA_DIR."""
    output = checkpoint["output"]
    return settings.media_dir() / f"{output['public_id']}.{output['format']}"


def run_demo(stack: DagsterStack, spec: WorkflowSpec, source: Path) -> bool:
    """Launch one job, follow it and print where everything is; whether it succeeded."""
    job_id = new_job_id()
    run_id = stack.launch_job(spec, job_id, source, launched_by="demo")
    run_url = f"{stack.ui_url}/runs/{run_id}"
    print(f"launched {spec.id} job {job_id} (run {run_id})")
    checkpoints = follow_run(stack, spec, job_id, run_id)
    run = stack.instance.get_run_by_id(run_id)
    if run is None or run.status != dg.DagsterRunStatus.SUCCESS:
        tags = run.tags if run else {}
        print(
            f"\ndemo: run {run_id} ended {run.status.value if run else 'missing'}: "
            f"{tags.get(ERROR_TYPE, 'unknown error')} in step {tags.get(FAILED_STEP, '?')}\n"
            f"  see {run_url} and the logs in {stack.home}",
            file=sys.stderr,
        )
        return False
    last = spec.steps[-1].name
    print(f"\nvideo:   {media_file(checkpoints[last])}")
    print(f"job id:  {job_id}")
    print(f"run id:  {run_id}")
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
    env = {"DAGSTER_HOME": str(home), "MEDIA_DIR": str(settings.media_dir())}
    stack = DagsterStack(home, env=env, port=port)
    try:
        print(f"starting dagster-webserver and dagster-daemon on {home} ...")
        stack.start()
        print(f"Dagster UI at {stack.ui_url} (logs in {home}/webserver.log, daemon.log)")
        if not run_demo(stack, spec, args.source):
            return 1
        if args.exit:
            return 0
        print("\nDagster keeps running: press Ctrl-C to stop")
        while all(proc.poll() is None for proc in stack.procs.values()):
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
        stack.stop()


if __name__ == "__main__":
    raise SystemExit(main())
