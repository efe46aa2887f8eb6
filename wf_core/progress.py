"""When a step's progress is worth a log line: each line is an event-log write."""

from __future__ import annotations

import time

from wf_core.clock import Clock

MIN_INTERVAL_SECONDS = 2.0


class ProgressGate:
    """Lets a progress report through only when its percentage changed, and at most every
    `min_interval` seconds, except the first and the last (100 %)."""

    def __init__(
        self,
        min_interval: float = MIN_INTERVAL_SECONDS,
        clock: Clock = time.monotonic,
    ) -> None:
        self.min_interval = min_interval
        self.clock = clock
        self.last_percent: int | None = None
        self.last_at = 0.0

    def admit(self, percent: int) -> bool:
        """Whether to log this report (and remember it if so)."""
        now = self.clock()
        if percent == self.last_percent:
            return False
        due = self.last_percent is None or percent >= 100 or now - self.last_at >= self.min_interval
        if due:
            self.last_percent, self.last_at = percent, now
        return due
