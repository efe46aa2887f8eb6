"""The workflow specs the bridge serves, re-read when a spec file changes."""

from __future__ import annotations

import threading
from pathlib import Path

from wf_core.settings import specs_dir
from wf_core.specs import WorkflowSpec, load_specs


class SpecCatalog:
    """Specs from a folder; a new, changed or removed file shows on the next request."""

    def __init__(self, directory: str | Path | None = None) -> None:
        self.directory = Path(directory) if directory else specs_dir()
        self._stamp: tuple = ()
        self._specs: dict[str, WorkflowSpec] = {}
        self._lock = threading.Lock()

    def _current_stamp(self) -> tuple:
        return tuple((p.name, p.stat().st_mtime_ns) for p in sorted(self.directory.glob("*.yaml")))

    def all(self) -> dict[str, WorkflowSpec]:
        """Every valid spec, keyed by id."""
        stamp = self._current_stamp()
        with self._lock:
            if stamp != self._stamp:
                self._specs = load_specs(self.directory)
                self._stamp = stamp
            return self._specs

    def get(self, workflow_id: str | None) -> WorkflowSpec | None:
        """One spec, or None."""
        return self.all().get(workflow_id or "")
