"""What the metrics sensor last counted of each job (`wf_job_index`).

The sensor moves its job gauges and counters by the change of a job's status since its
previous fold, so it keeps the status it counted here. Operators' filters and lists no
longer read this table: they read the job read model (`wf_jobs`, wf_store.job_rows),
which every transition keeps current; `find` remains for the fold's own checks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa

from wf_store.job_rows import JobFilter
from wf_store.predictions import PredictionStore
from wf_store.schema import job_index


@dataclass(frozen=True)
class IndexedJob:
    """One row of the job index."""

    job_id: str
    workflow_id: str
    user_id: str
    status: str
    error_type: str | None
    failed_step: str | None
    attempt: int
    run_id: str | None
    created_at: float
    updated_at: float


class JobIndex:
    """Reads of `wf_job_index` (the metrics sensor writes it through MetricsStore)."""

    def __init__(self, store: PredictionStore) -> None:
        self.store = store
        self.engine = store.engine

    def get_many(self, job_ids: Iterable[str]) -> dict[str, IndexedJob]:
        """The rows of these jobs, by id."""
        ids = list(job_ids)
        if not ids:
            return {}
        query = sa.select(job_index).where(job_index.c.job_id.in_(ids))
        with self.engine.connect() as conn:
            return {row["job_id"]: IndexedJob(**row) for row in conn.execute(query).mappings()}

    def find(
        self, where: JobFilter, limit: int = 100, before: tuple[float, str] | None = None
    ) -> list[IndexedJob]:
        """Matching jobs, newest first; `before` is the (created_at, job_id) to page after."""
        c = job_index.c
        conditions = []
        for column, value in (
            (c.status, where.status),
            (c.error_type, where.error_type),
            (c.workflow_id, where.workflow_id),
            (c.user_id, where.user_id),
        ):
            if value is not None:
                conditions.append(column == value)
        if where.since is not None:
            conditions.append(c.created_at >= where.since)
        if where.until is not None:
            conditions.append(c.created_at < where.until)
        if before is not None:
            at, job_id = before
            conditions.append(
                sa.or_(c.created_at < at, sa.and_(c.created_at == at, c.job_id < job_id))
            )
        query = (
            sa.select(job_index)
            .where(*conditions)
            .order_by(c.created_at.desc(), c.job_id.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [IndexedJob(**row) for row in conn.execute(query).mappings()]
