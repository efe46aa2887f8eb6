"""Spec versions and the version each job is pinned to (`wf_spec_versions`, `wf_job_specs`).

A job runs on the spec it started with: at execute its spec's content is stored under
its digest (once per version) and the job is pinned to that digest, with the run
config it was asked for. Steps, sensors and the bridge read a job's spec from here, so
editing or removing the file changes new jobs only. A pin stays open until the owner
check sees the job in a final state; the code location keeps defining a removed
workflow while any job pinned to it is open.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from wf_core.specs import WorkflowSpec, spec_digest, spec_from_snapshot
from wf_store.predictions import PredictionStore
from wf_store.schema import job_specs, owner_events, spec_versions


@dataclass(frozen=True)
class Pin:
    """One job's pinned version and what the owner check knows of it."""

    job_id: str
    workflow_id: str
    digest: str
    user_id: str
    run_config: dict[str, Any] | None
    created_at: float
    finished_at: float | None
    ownerless_since: float | None


@dataclass(frozen=True)
class OwnerEvent:
    """What the owner check did about one job."""

    job_id: str
    action: str
    message: str
    at: float


def _pin(row: Any) -> Pin:
    config = json.loads(row["run_config"]) if row["run_config"] else None
    return Pin(
        row["job_id"],
        row["workflow_id"],
        row["digest"],
        row["user_id"],
        config,
        row["created_at"],
        row["finished_at"],
        row["ownerless_since"],
    )


class SpecVersions:
    """Reads and writes of spec versions and job pins on the engine's state database."""

    # Versions never change once written: one process-wide cache (per database) serves
    # every instance.
    _cache: dict[tuple[str, str], WorkflowSpec] = {}

    def __init__(self, store: PredictionStore) -> None:
        self.store = store
        self.engine = store.engine

    def record(self, spec: WorkflowSpec) -> str:
        """Store `spec`'s content under its digest (once); the digest."""
        digest = spec_digest(spec)
        if (self.store.url, digest) in self._cache:
            return digest
        body = json.dumps(spec.model_dump(mode="json"), sort_keys=True)
        try:
            with self.engine.begin() as conn:
                exists = conn.execute(
                    sa.select(spec_versions.c.digest).where(spec_versions.c.digest == digest)
                ).first()
                if exists is None:
                    conn.execute(
                        spec_versions.insert().values(
                            digest=digest,
                            workflow_id=spec.id,
                            body=body,
                            created_at=self.store.clock(),
                        )
                    )
        except IntegrityError:
            pass  # another process stored the same version first
        self._cache[(self.store.url, digest)] = spec
        return digest

    def version(self, digest: str) -> WorkflowSpec | None:
        """The spec stored under `digest`, or None."""
        if (self.store.url, digest) in self._cache:
            return self._cache[(self.store.url, digest)]
        with self.engine.connect() as conn:
            body = conn.execute(
                sa.select(spec_versions.c.body).where(spec_versions.c.digest == digest)
            ).scalar()
        if body is None:
            return None
        spec = spec_from_snapshot(json.loads(body))
        self._cache[(self.store.url, digest)] = spec
        return spec

    def pin(
        self, job_id: str, spec: WorkflowSpec, user_id: str, run_config: dict[str, Any] | None
    ) -> Pin:
        """Pin `job_id` to `spec` unless it is pinned already; the job's pin either way."""
        digest = self.record(spec)
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    job_specs.insert().values(
                        job_id=job_id,
                        workflow_id=spec.id,
                        digest=digest,
                        user_id=user_id,
                        run_config=json.dumps(run_config) if run_config is not None else None,
                        created_at=self.store.clock(),
                    )
                )
        except IntegrityError:
            pass  # pinned before (by the bridge, or a run that got here first)
        found = self.get(job_id)
        assert found is not None
        return found

    def get(self, job_id: str) -> Pin | None:
        """One job's pin, or None (a job from before pins, or none at all)."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(job_specs).where(job_specs.c.job_id == job_id))
            found = row.mappings().first()
        return _pin(found) if found else None

    def spec_for_job(self, job_id: str) -> WorkflowSpec | None:
        """The spec version `job_id` runs on, or None when it has no pin."""
        pin = self.get(job_id)
        return self.version(pin.digest) if pin else None

    def unpin(self, job_id: str) -> None:
        """Forget a job that never started (its execute was refused after the pin)."""
        with self.engine.begin() as conn:
            conn.execute(job_specs.delete().where(job_specs.c.job_id == job_id))

    def open_pins(self, limit: int, after: str = "") -> list[Pin]:
        """Unfinished jobs, by job id after `after` (the owner check's round-robin)."""
        query = (
            sa.select(job_specs)
            .where(job_specs.c.finished_at.is_(None), job_specs.c.job_id > after)
            .order_by(job_specs.c.job_id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [_pin(row) for row in conn.execute(query).mappings()]

    def retired(self, current: Iterable[str]) -> list[WorkflowSpec]:
        """The newest version of each workflow gone from the files that open jobs still run on."""
        current_ids = set(current)
        query = (
            sa.select(job_specs.c.workflow_id, job_specs.c.digest, job_specs.c.created_at)
            .where(job_specs.c.finished_at.is_(None))
            .order_by(job_specs.c.created_at)
        )
        newest: dict[str, str] = {}
        with self.engine.connect() as conn:
            for workflow_id, digest, _ in conn.execute(query):
                if workflow_id not in current_ids:
                    newest[workflow_id] = digest
        found = [self.version(digest) for digest in newest.values()]
        return [spec for spec in found if spec is not None]

    def newest_versions(self) -> dict[str, WorkflowSpec]:
        """The newest stored version of every workflow any job ran on, by workflow id."""
        query = sa.select(spec_versions.c.workflow_id, spec_versions.c.digest).order_by(
            spec_versions.c.created_at
        )
        newest: dict[str, str] = {}
        with self.engine.connect() as conn:
            for workflow_id, digest in conn.execute(query):
                newest[workflow_id] = digest
        found = {key: self.version(digest) for key, digest in newest.items()}
        return {key: spec for key, spec in found.items() if spec is not None}

    def finished(self, job_ids: Iterable[str], now: float) -> None:
        """Close the pins of jobs seen in a final state."""
        self._update(
            job_ids, job_specs.c.finished_at.is_(None), finished_at=now, ownerless_since=None
        )

    def mark_ownerless(self, job_ids: Iterable[str], now: float) -> None:
        """Note when each job was first seen without an owner (kept if already noted)."""
        self._update(job_ids, job_specs.c.ownerless_since.is_(None), ownerless_since=now)

    def owned(self, job_ids: Iterable[str]) -> None:
        """Clear the ownerless mark of jobs seen with an owner."""
        self._update(job_ids, job_specs.c.ownerless_since.isnot(None), ownerless_since=None)

    def _update(self, job_ids: Iterable[str], condition: Any, **values: Any) -> None:
        ids = list(job_ids)
        if ids:
            with self.engine.begin() as conn:
                conn.execute(
                    job_specs.update()
                    .where(job_specs.c.job_id.in_(ids), condition)
                    .values(**values)
                )

    def record_owner_event(self, job_id: str, action: str, message: str, now: float) -> None:
        """Write what the owner check did about a job (admin history, metrics, alerts)."""
        with self.engine.begin() as conn:
            conn.execute(
                owner_events.insert().values(job_id=job_id, action=action, message=message, at=now)
            )

    def owner_events(
        self, job_id: str | None = None, since: float | None = None, limit: int = 100
    ) -> list[OwnerEvent]:
        """The owner check's actions, newest first, for one job or since a time."""
        query = sa.select(owner_events).order_by(owner_events.c.at.desc()).limit(limit)
        if job_id is not None:
            query = query.where(owner_events.c.job_id == job_id)
        if since is not None:
            query = query.where(owner_events.c.at >= since)
        with self.engine.connect() as conn:
            return [
                OwnerEvent(r["job_id"], r["action"], r["message"], r["at"])
                for r in conn.execute(query).mappings()
            ]

    def count_owner_events(self) -> dict[str, int]:
        """How many jobs the owner check repaired or failed, by action (for the metrics)."""
        query = sa.select(owner_events.c.action, sa.func.count()).group_by(owner_events.c.action)
        with self.engine.connect() as conn:
            return {action: int(n) for action, n in conn.execute(query)}


def with_retired(specs: dict[str, WorkflowSpec], url: str) -> dict[str, WorkflowSpec]:
    """`specs` plus each removed workflow that open jobs still run on (their version).

    The state database down at load costs only the removed workflows: their open jobs
    wait (their predictions are kept) until the next load finds them.
    """
    try:
        store = PredictionStore(url)
        try:
            retired = SpecVersions(store).retired(specs)
        finally:
            store.close()
    except Exception:
        _log.exception("retired workflows not loaded: the state database did not answer")
        return dict(specs)
    return {**{spec.id: spec for spec in retired}, **specs}


_log = logging.getLogger(__name__)
