"""Rebuild the job read model (`wf_jobs`) from Dagster's event log.

    python -m runtime.rebuild_read_model            # every job the instance has runs of
    python -m runtime.rebuild_read_model JOB_ID...  # these jobs

Each job's row is recomputed with the same folds as the live path (runtime/read_model.py:
its runs, its steps' checkpoint materializations, its cancel mark, its prediction rows)
and written only where it differs. Prints how many rows were read, written and left.
"""

from __future__ import annotations

import argparse
import sys

import dagster as dg

from runtime.read_model import job_rows_for, record_from_instance
from wf_core import tags as t
from wf_store.job_rows import JobRows
from wf_store.predictions import PredictionStore

PAGE = 500


def all_job_ids(instance: dg.DagsterInstance) -> list[str]:
    """Every job id the instance's runs carry, oldest first."""
    found: dict[str, None] = {}
    cursor = None
    while True:
        records = instance.get_run_records(limit=PAGE, cursor=cursor, ascending=True)
        for record in records:
            job_id = record.dagster_run.tags.get(t.JOB_ID)
            if job_id:
                found.setdefault(job_id)
        if len(records) < PAGE:
            return list(found)
        cursor = records[-1].dagster_run.run_id


def rebuild(
    instance: dg.DagsterInstance, rows: JobRows, job_ids: list[str] | None = None
) -> dict[str, int]:
    """Rebuild these jobs' rows (every job by default); counts of read, written, unchanged."""
    store = PredictionStore(str(rows.engine.url), engine=rows.engine)
    counts = {"jobs": 0, "written": 0, "unchanged": 0, "no_runs": 0}
    for job_id in job_ids if job_ids is not None else all_job_ids(instance):
        counts["jobs"] += 1
        before = rows.versions([job_id]).get(job_id)
        record = record_from_instance(instance, rows, store, job_id)
        if not record.runs:
            counts["no_runs"] += 1
            continue
        after = rows.replace(record)
        counts["unchanged" if after == before else "written"] += 1
    return counts


def main(argv: list[str] | None = None) -> int:
    """The command: rebuild rows from the instance at DAGSTER_HOME."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("job_ids", nargs="*", help="only these jobs (default: all)")
    args = parser.parse_args(argv)
    with dg.DagsterInstance.get() as instance:
        counts = rebuild(instance, job_rows_for(instance), args.job_ids or None)
    print(" ".join(f"{k}={v}" for k, v in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
