"""How long does user B's one job wait behind N queued jobs of user A? Real daemon.

Per N: a fresh stack (SQLite, offline models, MAX_CONCURRENT_RUNS slots); the daemon is
stopped while user A's N jobs are queued, started again, and once A's runs are flowing
user B submits one job. Reported: B's wait (its run's start minus its submission), how
many of A's jobs were still queued when B came, and how many of A's runs started while
B waited. With the per-user cap (MAX_RUNS_PER_USER, default slots - 1) B takes the next
free slot; `--uncapped` runs the same with the cap off (B waits behind A's backlog).

Run: `.venv/bin/python bench/fairness.py [--jobs 10 100 500] [--uncapped 10 100]`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dagster as dg

from runtime.stack import DagsterStack
from wf_core import tags as t
from wf_core.settings import REPO_ROOT
from wf_core.specs import load_specs

SAMPLE = REPO_ROOT / "samples" / "sample.jpg"


def _record(instance: dg.DagsterInstance, run_id: str) -> dg.RunRecord:
    (record,) = instance.get_run_records(filters=dg.RunsFilter(run_ids=[run_id]))
    return record


def measure(n: int, capped: bool, slots: int, timeout: float) -> dict:
    """One stack, N jobs of A then one of B; B's wait and who went ahead of it."""
    os.environ["MAX_CONCURRENT_RUNS"] = str(slots)
    os.environ["MAX_RUNS_PER_USER"] = str(slots - 1) if capped else "0"
    spec = load_specs()["img-edit-to-video"]
    root = tempfile.mkdtemp(prefix="fairness-")
    try:
        env = {"MEDIA_DIR": str(Path(root) / "media")}
        with DagsterStack(Path(root) / "home", env=env) as stack:
            stack.kill("daemon")

            def submit(user: str) -> str:
                return stack.launch_job(spec, str(uuid.uuid4()), SAMPLE, user=user)

            filled = time.monotonic()
            with ThreadPoolExecutor(max_workers=4) as pool:
                list(pool.map(lambda _: submit("user-a"), range(n)))
            filled = time.monotonic() - filled
            stack.restart("daemon")
            a_filter = dg.RunsFilter(tags={t.USER: "user-a"})
            while not any(r.start_time for r in stack.instance.get_run_records(a_filter)):
                time.sleep(0.1)
            queued = len(
                stack.instance.get_run_records(
                    dg.RunsFilter(tags={t.USER: "user-a"}, statuses=[dg.DagsterRunStatus.QUEUED])
                )
            )
            b_run = submit("user-b")
            deadline = time.time() + timeout
            while (record := _record(stack.instance, b_run)).start_time is None:
                if time.time() > deadline:
                    raise TimeoutError(f"N={n}: user B's run did not start in {timeout:.0f} s")
                time.sleep(0.05)
            created = record.create_timestamp.timestamp()
            started = record.start_time
            ahead = [
                r
                for r in stack.instance.get_run_records(a_filter)
                if r.start_time is not None and created < r.start_time < started
            ]
    finally:
        # A run worker stopped with the stack may still be writing its media.
        shutil.rmtree(root, ignore_errors=True)
    return {
        "n": n,
        "per_user_cap": slots - 1 if capped else None,
        "slots": slots,
        "a_queued_when_b_came": queued,
        "a_started_while_b_waited": len(ahead),
        "b_wait_seconds": round(started - created, 2),
        "queue_fill_seconds": round(filled, 1),
    }


def main() -> None:
    """Measure each N and print one JSON line per measurement."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, nargs="*", default=[10, 100, 500])
    parser.add_argument("--uncapped", type=int, nargs="*", default=[])
    parser.add_argument("--slots", type=int, default=6)
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args()
    for n in args.jobs:
        print(json.dumps(measure(n, True, args.slots, args.timeout)), flush=True)
    for n in args.uncapped:
        print(json.dumps(measure(n, False, args.slots, args.timeout)), flush=True)


if __name__ == "__main__":
    main()
