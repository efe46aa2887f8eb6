"""The prediction ledger: which paid prediction belongs to which job step, kept durably.

A step that crashes while a prediction runs must find that prediction again instead
of paying for a second one, so its id is written before any waiting begins.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any

from upath import UPath

from resources.json_files import write_json_atomic

RUNNING = frozenset({"starting", "processing"})
# A prediction in one of these states will never give us an output: make a new one.
SPENT = frozenset({"failed", "canceled", "aborted", "expired"})


def now_iso() -> str:
    """The current UTC time as ISO-8601."""
    return datetime.now(UTC).isoformat()


def input_fingerprint(model: str, provider_model: str, provider_input: dict[str, Any]) -> str:
    """A stable hash of what a prediction was asked, to refuse reusing one asked otherwise."""
    text = json.dumps([model, provider_model, provider_input], sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class PredictionRecord:
    """One job step's prediction: its id, what it was asked, and its last known status."""

    job_id: str
    step: str
    prediction_id: str
    model: str
    provider_model: str
    fingerprint: str
    status: str
    urls: dict[str, str] = field(default_factory=dict)
    created_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)
    output: Any = None

    def with_status(self, status: str, output: Any = None) -> PredictionRecord:
        """The same record with a new status (and output, once there is one)."""
        return replace(self, status=status, output=output, updated_at=now_iso())

    def age_seconds(self) -> float:
        """Seconds since the prediction was created."""
        return (datetime.now(UTC) - datetime.fromisoformat(self.created_at)).total_seconds()

    def as_dict(self) -> dict[str, Any]:
        """The record as a plain JSON-ready dict."""
        return asdict(self)


class PredictionLedger:
    """`<root>/<job_id>/<step>.json`, one record per job step, replaced atomically."""

    def __init__(self, root: str) -> None:
        self.root = root

    def path(self, job_id: str, step: str) -> UPath:
        """Where the record of one job step lives."""
        for part in (job_id, step):
            if not part or "/" in part or "\\" in part or part.startswith("."):
                raise ValueError(f"invalid ledger key part {part!r}")
        return UPath(self.root).joinpath(job_id, f"{step}.json")

    def read(self, job_id: str, step: str) -> PredictionRecord | None:
        """The saved record of a job step, or None."""
        path = self.path(job_id, step)
        if not path.exists():
            return None
        saved = json.loads(path.read_text(encoding="utf-8"))
        # Keys written by a newer version of this module are ignored, not fatal.
        return PredictionRecord(
            **{f.name: saved[f.name] for f in fields(PredictionRecord) if f.name in saved}
        )

    def save(self, record: PredictionRecord) -> None:
        """Write a record so that a reader sees the old one or the new one, never half."""
        write_json_atomic(self.path(record.job_id, record.step), record.as_dict())
