"""The one dynamic partitions definition: a partition per job, shared by every workflow."""

from __future__ import annotations

import dagster as dg

from wf_core.job_ids import JOBS_PARTITIONS_NAME

jobs_partitions = dg.DynamicPartitionsDefinition(name=JOBS_PARTITIONS_NAME)
