"""A job's stream as events: what each is, the order they go in, and what a client has
received (`Delivered`, the SSE id). Pure: no I/O, no Flask.

Events are derived from what Dagster recorded (step logs, checkpoints, failed runs).
Those records do not become visible in the order of their times (a checkpoint can
show up one poll after a later log line), so delivery never relies on a time cursor:
every event has an identity (a run's n-th progress line, a step's checkpoint, a
run's failure, the end), and each SSE id says which of them the client has received
(`Delivered`). A stream sends every event it has not sent yet, whatever its time,
and a reconnect with `Last-Event-ID` receives exactly what is missing.

A parked step's progress comes from its provider instead (the prediction store's row,
read on each poll while the job is running), and is sent as a `progress` event of the
usual shape whenever it changes. It is a level, not a history: it is not counted in
the SSE id (its event carries the id of what was delivered before it, unchanged), so
ids and replays stay exactly as above, and a reconnecting client is sent the current
provider progress once more, after whatever it missed. Resending a level is harmless;
encoding every provider reading into the id would make ids grow with no gain.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

# Order inside one batch of new events: time, then kind, then position.
SortKey = tuple[int, int, int, int]
# What an event is: ("p", run, n) a run's n-th progress line, ("c", step) a
# checkpoint, ("e", run) a run's failure, ("x",) the cancellation, ("t",) completion.
Identity = tuple


@dataclass
class Delivered:
    """Which of a job's events a client has received; its text form is the SSE id."""

    checkpoints: int = 0  # bit i: step i's checkpoint
    errors: int = 0  # bit i: the failure of run i (runs in creation order)
    progress: list[int] = field(default_factory=list)  # run i's first n progress lines
    cancelled: bool = False
    completed: bool = False

    def has(self, identity: Identity) -> bool:
        """Whether the event was received."""
        kind = identity[0]
        if kind == "p":
            run, n = identity[1], identity[2]
            return run < len(self.progress) and n < self.progress[run]
        if kind == "c":
            return bool(self.checkpoints >> identity[1] & 1)
        if kind == "e":
            return bool(self.errors >> identity[1] & 1)
        return self.cancelled if kind == "x" else self.completed

    def add(self, identity: Identity) -> None:
        """Record the event as received (a run's progress lines arrive in order)."""
        kind = identity[0]
        if kind == "p":
            run, n = identity[1], identity[2]
            self.progress.extend([0] * (run + 1 - len(self.progress)))
            self.progress[run] = max(self.progress[run], n + 1)
        elif kind == "c":
            self.checkpoints |= 1 << identity[1]
        elif kind == "e":
            self.errors |= 1 << identity[1]
        elif kind == "x":
            self.cancelled = True
        else:
            self.completed = True

    def encode(self) -> str:
        """The SSE id: `v2.<checkpoints>.<errors>.<progress per run>.<end flags>`."""
        progress = "_".join(str(n) for n in self.progress) or "0"
        flags = int(self.cancelled) | int(self.completed) << 1
        return f"v2.{self.checkpoints}.{self.errors}.{progress}.{flags}"

    @classmethod
    def parse(cls, value: str | None) -> Delivered:
        """An SSE id back into what was received; nothing for an absent or foreign id."""
        parts = (value or "").split(".")
        if len(parts) != 5 or parts[0] != "v2":
            return cls()
        try:
            progress = [int(n) for n in parts[3].split("_")]
            flags = int(parts[4])
            return cls(int(parts[1]), int(parts[2]), progress, bool(flags & 1), bool(flags & 2))
        except ValueError:
            return cls()


@dataclass(frozen=True)
class Event:
    """One SSE event: what it is, where it goes in a batch, its name and data."""

    identity: Identity
    order: SortKey
    name: str
    data: dict


def format_event(event_id: str, name: str, data: dict) -> str:
    """One SSE message."""
    return f"id: {event_id}\nevent: {name}\ndata: {json.dumps(data)}\n\n"
