"""Job webhooks to API clients: which jobs want one, and every delivery attempt.

A row per job with a `callback_url`, written at execute. The callbacks sensor looks at
`watching` rows when they are due; once the job is final it queues the event
(`pending`) and delivers it, recording every attempt in `wf_callback_deliveries`; a
failed attempt is tried again with exponential backoff until it is `delivered` or the
attempts run out (`gave_up`). Moves are compare-and-set on `state`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from wf_core.backoff import backoff_seconds
from wf_store.schema import callback_deliveries as deliveries
from wf_store.schema import callbacks

WATCHING, PENDING, DELIVERED, GAVE_UP = "watching", "pending", "delivered", "gave_up"


@dataclass(frozen=True)
class Callback:
    """One job's webhook: where it goes, and where it stands."""

    job_id: str
    user_id: str
    workflow_id: str
    url: str
    created_at: float
    event: str | None
    state: str
    next_check_at: float


@dataclass(frozen=True)
class Delivery:
    """One attempt to deliver a job's event."""

    job_id: str
    webhook_id: str
    attempt: int
    status_code: int | None
    error: str | None
    at: float


def backoff(attempt: int, base: float = 5.0, cap: float = 3600.0) -> float:
    """Seconds before attempt `attempt + 1`: base * 2^(attempt-1), at most `cap`."""
    return backoff_seconds(attempt, base, cap)


class CallbackStore:
    """`wf_callbacks` and `wf_callback_deliveries` on the engine's state database."""

    def __init__(self, engine: Engine, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.clock = clock

    def watch(self, job_id: str, user_id: str, workflow_id: str, url: str) -> None:
        """A new job wants its final event sent to `url`."""
        now = self.clock()
        with self.engine.begin() as conn:
            conn.execute(
                callbacks.insert().values(
                    job_id=job_id,
                    user_id=user_id,
                    workflow_id=workflow_id,
                    url=url,
                    created_at=now,
                    state=WATCHING,
                    next_check_at=now,
                )
            )

    def forget(self, job_id: str) -> None:
        """The job was never launched: no webhook for it."""
        with self.engine.begin() as conn:
            conn.execute(callbacks.delete().where(callbacks.c.job_id == job_id))

    def get(self, job_id: str) -> Callback | None:
        """One job's row."""
        query = sa.select(callbacks).where(callbacks.c.job_id == job_id)
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return Callback(**dict(row)) if row else None

    def due(self, limit: int, now: float | None = None) -> list[Callback]:
        """Watching or pending rows whose time has come, most overdue first."""
        now = self.clock() if now is None else now
        query = (
            sa.select(callbacks)
            .where(callbacks.c.state.in_((WATCHING, PENDING)), callbacks.c.next_check_at <= now)
            .order_by(callbacks.c.next_check_at)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [Callback(**dict(r)) for r in conn.execute(query).mappings()]

    def check_later(self, job_id: str, when: float) -> None:
        """The job is not final yet: look again at `when`."""
        self._move(job_id, (WATCHING,), next_check_at=when)

    def queue(self, job_id: str, event: str) -> bool:
        """The job is final: its event is to be delivered now."""
        return self._move(job_id, (WATCHING,), event=event, state=PENDING)

    def attempts(self, job_id: str) -> list[Delivery]:
        """Every delivery attempt of the job's event, oldest first."""
        query = (
            sa.select(deliveries)
            .where(deliveries.c.job_id == job_id)
            .order_by(deliveries.c.attempt)
        )
        with self.engine.connect() as conn:
            return [
                Delivery(**{k: v for k, v in r.items() if k != "id"})
                for r in conn.execute(query).mappings()
            ]

    def record(
        self,
        job_id: str,
        webhook_id: str,
        attempt: int,
        status_code: int | None,
        error: str | None,
        max_attempts: int,
    ) -> str:
        """Record one attempt and move the row on: delivered, retried later, or given up."""
        now = self.clock()
        ok = status_code is not None and 200 <= status_code < 300
        with self.engine.begin() as conn:
            conn.execute(
                deliveries.insert().values(
                    job_id=job_id,
                    webhook_id=webhook_id,
                    attempt=attempt,
                    status_code=status_code,
                    error=error,
                    at=now,
                )
            )
        if ok:
            state = DELIVERED
            self._move(job_id, (PENDING,), state=DELIVERED)
        elif attempt >= max_attempts:
            state = GAVE_UP
            self._move(job_id, (PENDING,), state=GAVE_UP)
        else:
            state = PENDING
            self._move(job_id, (PENDING,), next_check_at=now + backoff(attempt))
        return state

    def _move(self, job_id: str, allowed: tuple[str, ...], **values: object) -> bool:
        with self.engine.begin() as conn:
            result = conn.execute(
                callbacks.update()
                .where(callbacks.c.job_id == job_id, callbacks.c.state.in_(allowed))
                .values(**values)
            )
        return bool(result.rowcount)
