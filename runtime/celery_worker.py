"""Start a run worker host: `wf-worker` (or `python -m runtime.celery_worker`, `make worker`).

Writes this host's dagster.yaml (the same PostgreSQL and broker as the daemon's), then
runs `celery worker` on runtime.celery_app with a prefork pool of WORKER_CONCURRENCY
processes, each executing one run at a time. The node is named `wf@<hostname>`: run
monitoring checks that name with the broker, and steps tag `wf/worker` with this host.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from runtime.celery_config import ProfileError, broker_url, celery_enabled, queues, require_postgres
from runtime.instance import prepare_instance
from wf_core import settings
from wf_core.config import EngineSettings


def default_concurrency() -> int:
    """WORKER_CONCURRENCY, else 3 runs per core (runs are short and CPU-bound)."""
    return EngineSettings.from_env().worker_concurrency or 3 * (os.cpu_count() or 1)


def worker_argv(
    concurrency: int, queue_names: Sequence[str], name: str, loglevel: str = "INFO"
) -> list[str]:
    """The `celery worker` command line for this host."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "runtime.celery_app",
        "worker",
        "--pool=prefork",
        f"--concurrency={concurrency}",
        "--prefetch-multiplier=1",
        f"--queues={','.join(queue_names)}",
        f"--hostname={name}@%h",
        f"--loglevel={loglevel}",
        # No start-up sync with the other workers: a new host takes runs at once.
        "--without-mingle",
        "--without-gossip",
    ]


def main(argv: Sequence[str] | None = None) -> None:
    """Check the profile, write dagster.yaml, then become the Celery worker."""
    parser = argparse.ArgumentParser(prog="wf-worker", description=__doc__)
    parser.add_argument("--concurrency", type=int, default=default_concurrency())
    parser.add_argument("--queues", default=",".join(queues(os.environ)))
    parser.add_argument("--name", default="wf", help="node name prefix (wf@<hostname>)")
    parser.add_argument("--loglevel", default="INFO")
    args = parser.parse_args(argv)
    os.environ.setdefault("RUN_LAUNCHER", "celery")
    try:
        if not celery_enabled():
            raise ProfileError(
                "wf-worker runs the celery profile: unset RUN_LAUNCHER or set it to celery"
            )
        broker_url(os.environ)
        require_postgres(os.environ)
    except ProfileError as exc:
        raise SystemExit(f"wf-worker: {exc}") from None
    written = prepare_instance()
    print(f"wf-worker: {written}, {args.concurrency} processes", file=sys.stderr)
    command = worker_argv(args.concurrency, args.queues.split(","), args.name, args.loglevel)
    os.chdir(settings.REPO_ROOT)
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
