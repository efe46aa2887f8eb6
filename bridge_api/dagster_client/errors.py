"""The Dagster client's own errors. They know nothing of HTTP: the bridge's HTTP layer
answers them (`http.errors`: 502 `orchestrator_error`, 503 `orchestrator_unavailable`)."""

from __future__ import annotations


class DagsterError(Exception):
    """Dagster refused or failed a request."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class DagsterUnavailable(DagsterError):
    """Dagster is unreachable or gave no usable answer; nothing was done, try again shortly."""
