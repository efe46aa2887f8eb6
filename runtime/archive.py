"""Archive old jobs: drop their dynamic partitions, keep their checkpoints and media.

Dagster advises at most ~100,000 partitions per asset, and SQLite slows down with
tens of thousands of dynamic partitions (dagster-io/dagster#16260). Job ids are
UUIDv7, so a job's age is read from its id without a query. Run:
`python -m runtime.archive --older-than-days 30`.
"""

from __future__ import annotations

import argparse
import time

import dagster as dg

from wf_core.job_ids import JOBS_PARTITIONS_NAME, is_job_id, job_id_created_at
from wf_core.job_state import ACTIVE

_ACTIVE = [dg.DagsterRunStatus(status) for status in sorted(ACTIVE)]


def archivable_jobs(instance: dg.DagsterInstance, older_than_seconds: float) -> list[str]:
    """Job partitions created before the cutoff that have no queued or running run."""
    cutoff = time.time() - older_than_seconds
    old = [
        key
        for key in instance.get_dynamic_partitions(JOBS_PARTITIONS_NAME)
        if is_job_id(key) and job_id_created_at(key) < cutoff
    ]
    if not old:
        return []
    active = instance.get_runs(
        filters=dg.RunsFilter(statuses=_ACTIVE, tags={"dagster/partition": old})
    )
    busy = {run.tags.get("dagster/partition") for run in active}
    return [key for key in old if key not in busy]


def archive_jobs(instance: dg.DagsterInstance, older_than_seconds: float) -> list[str]:
    """Delete the partitions of archivable jobs; returns the job ids archived."""
    archived = archivable_jobs(instance, older_than_seconds)
    for job_id in archived:
        instance.delete_dynamic_partition(JOBS_PARTITIONS_NAME, job_id)
    return archived


def main() -> None:
    """Command line: archive jobs older than --older-than-days."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--older-than-days", type=float, required=True)
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    seconds = args.older_than_days * 86400
    with dg.DagsterInstance.get() as instance:
        if args.dry_run:
            jobs = archivable_jobs(instance, seconds)
        else:
            jobs = archive_jobs(instance, seconds)
    verb = "would archive" if args.dry_run else "archived"
    print(f"{verb} {len(jobs)} jobs")


if __name__ == "__main__":
    main()
