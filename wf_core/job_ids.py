"""Job ids: UUIDv7, random yet ordered by creation time; one dynamic partition each."""

from __future__ import annotations

import os
import time
import uuid

from wf_core.times import epoch_ms_to_seconds, seconds_to_ms

JOBS_PARTITIONS_NAME = "jobs"


def new_job_id(now: float | None = None) -> str:
    """A UUIDv7: random, yet ordered by creation time, so old jobs can be archived by range."""
    millis = seconds_to_ms(time.time() if now is None else now)
    raw = bytearray(millis.to_bytes(6, "big") + os.urandom(10))
    raw[6] = 0x70 | (raw[6] & 0x0F)
    raw[8] = 0x80 | (raw[8] & 0x3F)
    return str(uuid.UUID(bytes=bytes(raw)))


def job_id_created_at(job_id: str) -> float:
    """The creation time (epoch seconds) carried in a UUIDv7 job id."""
    value = uuid.UUID(job_id)
    if value.version != 7:
        raise ValueError(f"{job_id} is not a UUIDv7 job id")
    return epoch_ms_to_seconds(int.from_bytes(value.bytes[:6], "big"))


def is_job_id(value: str) -> bool:
    """Whether `value` is a well-formed job id."""
    try:
        return uuid.UUID(value).version == 7 and str(uuid.UUID(value)) == value
    except ValueError:
        return False
