"""Which alerts were announced and not yet cleared (`wf_alerts`): what makes an alert send
one message when it starts and one when it clears, across sensor ticks and restarts."""

from __future__ import annotations

import sqlalchemy as sa

from wf_store.predictions import CREATING, PARKED, Prediction, PredictionStore
from wf_store.schema import alert_state, predictions


class AlertStore:
    """`wf_alerts` on the engine's state database."""

    def __init__(self, store: PredictionStore) -> None:
        self.store = store
        self.engine = store.engine

    def announced(self) -> dict[str, tuple[str, float]]:
        """Active alerts: key -> (the title announced, when the condition last held)."""
        c = alert_state.c
        query = sa.select(c.key, c.summary, c.updated_at).where(c.active)
        with self.engine.connect() as conn:
            return {key: (summary, at) for key, summary, at in conn.execute(query)}

    def held(self, keys: list[str], now: float) -> None:
        """These active alerts' conditions still hold at `now`."""
        if keys:
            with self.engine.begin() as conn:
                conn.execute(
                    alert_state.update()
                    .where(alert_state.c.key.in_(keys), alert_state.c.active)
                    .values(updated_at=now)
                )

    def started(self, key: str, title: str, now: float) -> None:
        """`key` was announced as started."""
        values = {"active": True, "started_at": now, "cleared_at": None, "summary": title}
        with self.engine.begin() as conn:
            updated = conn.execute(
                alert_state.update()
                .where(alert_state.c.key == key)
                .values(**values, updated_at=now)
            ).rowcount
            if not updated:
                conn.execute(alert_state.insert().values(key=key, **values, updated_at=now))

    def cleared(self, key: str, now: float) -> None:
        """`key` was announced as cleared."""
        with self.engine.begin() as conn:
            conn.execute(
                alert_state.update()
                .where(alert_state.c.key == key)
                .values(active=False, cleared_at=now, updated_at=now)
            )

    def waiting_since(self, before: float, limit: int = 200) -> list[Prediction]:
        """Predictions still being created or at the provider, asked before `before`."""
        query = (
            sa.select(predictions)
            .where(predictions.c.state.in_((CREATING, PARKED)), predictions.c.created_at < before)
            .order_by(predictions.c.created_at)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [Prediction.from_row(row) for row in conn.execute(query).mappings()]
