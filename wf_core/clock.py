"""The one clock type: code that decides by the time takes one, so tests tick it."""

from __future__ import annotations

from collections.abc import Callable

# Seconds as a float: `time.time` (epoch seconds) for times that are stored or
# compared across processes, `time.monotonic` for intervals inside one process.
Clock = Callable[[], float]
