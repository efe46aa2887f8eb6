"""Time conversions with the unit in every name, so no caller guesses one.

The units met in this project: epoch seconds as floats (`time.time()`, Dagster's run
records, GraphQL's run `startTime`/`endTime`/`updateTime`), epoch milliseconds (the
`timestamp` of GraphQL's log events and materializations, sent as text; job ids), and
ISO-8601 text (checkpoints, run tags, the HTTP API).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Literal

from wf_core.clock import Clock

Timespec = Literal["auto", "seconds", "milliseconds", "microseconds"]


def epoch_seconds_to_iso(seconds: float, timespec: Timespec = "milliseconds") -> str:
    """Epoch seconds as ISO-8601 UTC text (milliseconds unless `timespec` says otherwise)."""
    return epoch_seconds_to_datetime(seconds).isoformat(timespec=timespec)


def epoch_seconds_to_datetime(seconds: float) -> datetime:
    """Epoch seconds as an aware UTC datetime."""
    return datetime.fromtimestamp(seconds, UTC)


def iso_to_epoch_seconds(text: str) -> float:
    """ISO-8601 text (a trailing `Z` allowed) as epoch seconds; ValueError if it is not."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def iso_to_epoch_ms(text: str) -> int:
    """ISO-8601 text as whole epoch milliseconds (truncated)."""
    return seconds_to_ms(iso_to_epoch_seconds(text))


def seconds_to_ms(seconds: float) -> int:
    """Seconds as whole milliseconds (truncated)."""
    return int(seconds * 1000)


def epoch_ms_to_seconds(ms: float) -> float:
    """Epoch milliseconds as epoch seconds."""
    return ms / 1000


def epoch_ms_text_to_ms(text: str | float) -> int:
    """An epoch-milliseconds value sent as text (GraphQL's event `timestamp`) as an int."""
    return int(float(text))


def now_iso(clock: Clock = time.time) -> str:
    """The wall clock's time now as ISO-8601 UTC with milliseconds."""
    return epoch_seconds_to_iso(clock())
