"""A clock that tests move by hand, for caches, rate limits and the retry sensor."""

from __future__ import annotations

import time


class FakeClock:
    """Stands in for `time.monotonic` or `time.time`; only `advance` moves it."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    @classmethod
    def at_wall_time(cls) -> FakeClock:
        """Starts at the real epoch time, for code that compares it with timestamps in tags."""
        return cls(start=time.time())

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Let `seconds` pass."""
        assert seconds >= 0, "a clock never goes back"
        self.now += seconds

    def advance_to(self, when: float) -> None:
        """Let time pass until `when`; nothing happens if it is already that late."""
        self.now = max(self.now, when)
