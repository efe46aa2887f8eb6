"""The workflow specs the bridge serves: what can run now, and what each job runs on.

- `runnable()`: the valid spec files whose job the orchestrator has loaded. A new file
  is listed once the shared code server has reloaded it (a second or two), so a client
  that trusts the list can run what it lists; a removed file is gone at once.
- `all()`: every valid spec file (re-read when a file changes); a bad file is
  reported in `errors()` and never hides the others.
- `for_job(job_id, workflow_id)`: the version a job is pinned to (it keeps running
  on it after its file is edited or removed), else the file's current version.
- `readable()`: the files plus the last version of each removed workflow, so the
  jobs of a removed workflow can still be read and listed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from wf_core.settings import specs_dir
from wf_core.specs import SpecError, WorkflowSpec, read_spec_dir
from wf_store.spec_versions import SpecVersions

# How long the orchestrator's job list is trusted (one GraphQL read per interval); less
# while a valid file's job is missing from it (a reload in progress), so each bridge
# process lists a new workflow within a fraction of a second of the orchestrator.
RUNNABLE_TTL_SECONDS = 1.0
PENDING_TTL_SECONDS = 0.2
READABLE_TTL_SECONDS = 5.0

_log = logging.getLogger(__name__)


class SpecCatalog:
    """Specs from a folder, checked against what the orchestrator has loaded."""

    def __init__(
        self,
        directory: str | Path | None = None,
        loaded_jobs: Callable[[], set[str]] | None = None,
        versions: Callable[[], SpecVersions] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory = Path(directory) if directory else specs_dir()
        self._loaded_jobs = loaded_jobs
        self._versions = versions
        self._clock = clock
        self._stamp: tuple = ()
        self._specs: dict[str, WorkflowSpec] = {}
        self._errors: list[SpecError] = []
        self._jobs: tuple[float, set[str]] | None = None
        self._readable: tuple[float, dict[str, WorkflowSpec]] | None = None
        self._lock = threading.Lock()

    def _current_stamp(self) -> tuple:
        stamp = []
        for path in sorted(self.directory.glob("*.yaml")):
            try:
                stamp.append((path.name, path.stat().st_mtime_ns))
            except FileNotFoundError:
                continue
        return tuple(stamp)

    def all(self) -> dict[str, WorkflowSpec]:
        """Every valid spec file, keyed by id."""
        stamp = self._current_stamp()
        with self._lock:
            if stamp != self._stamp:
                found = read_spec_dir(self.directory)
                self._specs, self._errors, self._stamp = found.specs, found.errors, stamp
            return self._specs

    def errors(self) -> list[SpecError]:
        """The spec files skipped as invalid, each naming its file and field."""
        self.all()
        return list(self._errors)

    def get(self, workflow_id: str | None) -> WorkflowSpec | None:
        """One valid spec file, or None."""
        return self.all().get(workflow_id or "")

    def runnable(self, fresh: bool = False) -> dict[str, WorkflowSpec]:
        """The valid spec files the orchestrator can run right now (`fresh`: ask it now,
        not the last answer: what execute does before it refuses)."""
        specs = self.all()
        jobs = self._orchestrator_jobs(fresh)
        if jobs is None:
            return specs
        return {key: spec for key, spec in specs.items() if spec.job_name in jobs}

    def _orchestrator_jobs(self, fresh: bool = False) -> set[str] | None:
        if self._loaded_jobs is None:
            return None
        now = self._clock()
        cached = self._jobs
        if not fresh and cached is not None:
            pending = any(spec.job_name not in cached[1] for spec in self._specs.values())
            if now - cached[0] < (PENDING_TTL_SECONDS if pending else RUNNABLE_TTL_SECONDS):
                return cached[1]
        try:
            jobs = self._loaded_jobs()
        except Exception:
            # Dagster unreachable: execute answers 503 on its own; the list keeps the
            # last set it saw (or the files, before any).
            _log.warning("the orchestrator's jobs could not be read; using the last known")
            return cached[1] if cached else None
        self._jobs = (now, jobs)
        return jobs

    def for_job(self, job_id: str, workflow_id: str | None) -> WorkflowSpec | None:
        """The spec version `job_id` runs on, else its workflow's current file."""
        if self._versions is not None:
            try:
                pinned = self._versions().spec_for_job(job_id)
            except Exception:
                _log.exception("job %s: its pinned spec could not be read", job_id)
                pinned = None
            if pinned is not None and (workflow_id is None or pinned.id == workflow_id):
                return pinned
        return self.get(workflow_id)

    def stored_version(self, digest: str | None, workflow_id: str | None) -> WorkflowSpec | None:
        """The stored spec version `digest` of `workflow_id` (versions never change: cached
        per process, no query once read), or None."""
        if not digest or self._versions is None:
            return None
        try:
            spec = self._versions().version(digest)
        except Exception:
            _log.exception("spec version %s could not be read", digest)
            return None
        return spec if spec is not None and spec.id == workflow_id else None

    def readable(self) -> dict[str, WorkflowSpec]:
        """The files, plus the newest stored version of each workflow whose file is gone."""
        files = self.all()
        if self._versions is None:
            return files
        now = self._clock()
        cached = self._readable
        if cached is None or now - cached[0] >= READABLE_TTL_SECONDS:
            try:
                cached = (now, self._versions().newest_versions())
            except Exception:
                _log.exception("stored spec versions could not be read")
                cached = (now, {})
            self._readable = cached
        return {**cached[1], **files}

    def specs_for_job(self, job_id: str) -> dict[str, WorkflowSpec]:
        """The specs to read one job with: its own pinned version over `readable()`."""
        specs = self.readable()
        pinned = self.for_job(job_id, None)
        return {**specs, pinned.id: pinned} if pinned is not None else specs
