"""`wf-admin`: the admin routes' operations from a shell, through the bridge's own code.

    wf-admin list --status failed --error-type invalid_key --since 2026-01-01T10:00:00Z
    wf-admin retry --error-type invalid_key --since 2026-01-01T10:00:00Z --dry-run
    wf-admin cancel --workflow-id img-edit-to-video --status pending_retry
    wf-admin history <job_id>

It builds the bridge app from the environment (DAGSTER_GRAPHQL_URL, the state database)
and runs inside its context, as the operator `cli:<login>`; output is JSON.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from bridge_api.app import create_app
from bridge_api.dagster_client.errors import DagsterError
from bridge_api.http.errors import ApiError, orchestrator_answer
from bridge_api.jobs import bulk, history
from bridge_api.jobs.filters import parse_filter


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wf-admin", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("list", "retry", "cancel"):
        command = commands.add_parser(name)
        for field in ("status", "error-type", "workflow-id", "user-id", "since", "until"):
            command.add_argument(f"--{field}")
        command.add_argument("--limit", type=int, default=50 if name == "list" else 1000)
        if name != "list":
            command.add_argument("--dry-run", action="store_true")
    commands.add_parser("history").add_argument("job_id")
    return parser


def run(argv: Sequence[str], app: Any = None) -> tuple[int, Any]:
    """Carry out one command; (exit status, JSON-ready result). Tests pass their `app`."""
    args = _parser().parse_args(argv)
    app = app or create_app({"AUTH_MODE": "disabled"})
    actor = f"cli:{getpass.getuser()}"
    with app.app_context():
        try:
            if args.command == "history":
                events = history.history(args.job_id)
                if events is None:
                    return 1, {"error": f"no job {args.job_id}"}
                return 0, {"job_id": args.job_id, "events": events}
            where = parse_filter({k: v for k, v in vars(args).items() if isinstance(v, str)})
            if args.command == "list":
                jobs = bulk.find_jobs(where, args.limit)
                return 0, {"jobs": [bulk.indexed_view(j) for j in jobs]}
            if all(v is None for v in vars(where).values()):
                return 2, {"error": "name at least one filter (--status, --error-type, ...)"}
            result = bulk.bulk(args.command, where, actor, args.dry_run, args.limit)
            return 0, asdict(result)
        except ApiError as exc:
            return 2, exc.body()
        except DagsterError as exc:
            return 2, orchestrator_answer(exc).body()


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the `wf-admin` console script."""
    status, result = run(sys.argv[1:] if argv is None else argv)
    print(json.dumps(result, indent=2))
    sys.exit(status)


if __name__ == "__main__":
    main()
