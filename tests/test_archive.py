"""Old jobs' partitions are archived by the age in their UUIDv7 id; active ones are kept."""

from __future__ import annotations

import time
import uuid

import dagster as dg
import pytest

from runtime.archive import archive_jobs
from wf_core.job_ids import JOBS_PARTITIONS_NAME, is_job_id, job_id_created_at, new_job_id


def test_job_ids_are_time_ordered_uuid7() -> None:
    earlier = new_job_id(now=1_700_000_000.0)
    later = new_job_id(now=1_700_000_001.0)
    assert is_job_id(earlier) and uuid.UUID(earlier).version == 7
    assert earlier < later
    assert job_id_created_at(earlier) == pytest.approx(1_700_000_000.0)
    assert not is_job_id(str(uuid.uuid4()))
    assert not is_job_id("../../etc")


def test_archive_drops_old_idle_jobs_only(instance) -> None:
    now = time.time()
    old_idle = new_job_id(now=now - 40 * 86400)
    old_busy = new_job_id(now=now - 40 * 86400)
    fresh = new_job_id(now=now)
    instance.add_dynamic_partitions(JOBS_PARTITIONS_NAME, [old_idle, old_busy, fresh, "manual"])
    instance.add_run(
        dg.DagsterRun(
            job_name="img_edit_to_video",
            status=dg.DagsterRunStatus.STARTED,
            tags={"dagster/partition": old_busy},
        )
    )
    assert archive_jobs(instance, 30 * 86400) == [old_idle]
    left = set(instance.get_dynamic_partitions(JOBS_PARTITIONS_NAME))
    assert left == {old_busy, fresh, "manual"}
