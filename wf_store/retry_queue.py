"""The retry queue: which failed runs wait for a retry, and when each is worth a look.

The retry sensor once read every waiting run and its job's whole state on every tick:
~10 database round trips per waiting job, so a provider-wide quota outage (every
affected job waiting on one breaker) pushed a tick past Dagster's 60 s sensor timeout.
Here each waiting run is one row with the earliest time its decision can change
(`next_check_at`) and the quota breaker it waits on, if any. A tick reads the few rows
that are due, skipping those behind an open breaker, in one indexed query.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from wf_store.predictions import PredictionStore
from wf_store.schema import waiting


@dataclass(frozen=True)
class Waiting:
    """One failed run waiting for its retry."""

    run_id: str
    job_id: str
    workflow_id: str
    error_type: str
    quota_key: str | None
    next_check_at: float
    created_at: float
    checks: int


class RetryQueue:
    """`wf_retry_waiting` on the engine's state database (same engine as the store)."""

    def __init__(self, store: PredictionStore) -> None:
        self.store = store
        self.engine = store.engine

    def add(
        self,
        run_id: str,
        job_id: str,
        workflow_id: str,
        error_type: str,
        quota_key: str | None,
        now: float,
    ) -> bool:
        """A run that failed retryably starts waiting; False if it already was."""
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    waiting.insert().values(
                        run_id=run_id,
                        job_id=job_id,
                        workflow_id=workflow_id,
                        error_type=error_type,
                        quota_key=quota_key,
                        next_check_at=now,
                        created_at=now,
                        checks=0,
                    )
                )
        except IntegrityError:
            return False
        return True

    def due(self, now: float, limit: int, held_keys: Iterable[str] = ()) -> list[Waiting]:
        """Rows whose check time has come, oldest check first, except those waiting behind
        a breaker in `held_keys` (open and not taking a probe)."""
        condition = waiting.c.next_check_at <= now
        held = sorted(set(held_keys))
        if held:
            condition = sa.and_(
                condition,
                sa.or_(waiting.c.quota_key.is_(None), waiting.c.quota_key.not_in(held)),
            )
        query = (
            sa.select(waiting)
            .where(condition)
            .order_by(waiting.c.next_check_at, waiting.c.created_at)
            .limit(limit)
        )
        return self._rows(query)

    def oldest_behind(self, quota_key: str, limit: int = 1) -> list[Waiting]:
        """The longest-waiting runs behind one breaker (a probe takes the first that can
        still go)."""
        query = (
            sa.select(waiting)
            .where(waiting.c.quota_key == quota_key)
            .order_by(waiting.c.created_at, waiting.c.run_id)
            .limit(limit)
        )
        return self._rows(query)

    def check_later(self, run_id: str, when: float) -> None:
        """The run's decision cannot change before `when`."""
        with self.engine.begin() as conn:
            conn.execute(
                waiting.update()
                .where(waiting.c.run_id == run_id)
                .values(next_check_at=when, checks=waiting.c.checks + 1)
            )

    def remove(self, run_ids: Iterable[str]) -> None:
        """These runs wait no more (retried, settled, or superseded)."""
        ids = list(run_ids)
        if ids:
            with self.engine.begin() as conn:
                conn.execute(waiting.delete().where(waiting.c.run_id.in_(ids)))

    def count(self, quota_key: str | None = None) -> int:
        """How many runs wait (behind one breaker, if given)."""
        query = sa.select(sa.func.count()).select_from(waiting)
        if quota_key is not None:
            query = query.where(waiting.c.quota_key == quota_key)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def _rows(self, query: sa.Select) -> list[Waiting]:
        with self.engine.connect() as conn:
            return [Waiting(**dict(row)) for row in conn.execute(query).mappings()]
