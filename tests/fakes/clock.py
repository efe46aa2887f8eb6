"""A monotonic clock that tests move by hand, for caches and rate limits."""

from __future__ import annotations


class FakeClock:
    """Stands in for `time.monotonic`; `advance` moves it."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Let `seconds` pass."""
        self.now += seconds
