"""The prediction store: every paid prediction, who owns it now, and how it ended.

One row per intent to create a prediction for a job step. The row is written before
the provider is called, so a crash anywhere leaves a trace to search from instead of
a billed prediction nobody knows about. Its `state` says who may act on it next;
every change is a compare-and-set on that state, so a webhook, the poller, the
hand-off sensor and a run never act on one prediction twice:

    creating --created--> parked --complete--> completed --hand_off--> handed_off
        |                    |                     |                       |
        +--complete----------+---------------------+---- claim ------------+--> consuming
        |                                                                          |
        +--> abandoned (refused create, input changed, cancelled)       consumed <-+

- `creating`: intent recorded, the create call may or may not have reached the provider.
- `parked`: the provider works on it; no process waits for it.
- `completed`: the provider reported a terminal status (webhook, poll, or create answer).
- `handed_off`: one claimer (the warm continuation worker or the parked-steps sensor)
  took its continuation, by compare-and-set (`take_for_handoff`).
- `consuming`: a run is storing its output (or raising its failure).
- `consumed` / `abandoned`: final.

SQLite (one host, WAL) by default; PostgreSQL when the URL says so (several hosts).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from wf_core.clock import Clock
from wf_core.job_ids import new_job_id
from wf_store.job_rows import project_predictions
from wf_store.schema import predictions, webhook_events
from wf_store.state_db import engine_for, open_state_db
from wf_store.wakeups import COMPLETED_CHANNEL, is_postgres, notify

CREATING = "creating"
PARKED = "parked"
COMPLETED = "completed"
HANDED_OFF = "handed_off"
CONSUMING = "consuming"
CONSUMED = "consumed"
ABANDONED = "abandoned"
CANCEL_REQUESTED = "cancel_requested"
# States in which the prediction may still give the job its output.
LIVE = (CREATING, PARKED, COMPLETED, HANDED_OFF, CONSUMING)
# Provider statuses (Replicate's words; the local provider uses the same).
RUNNING_STATUSES = frozenset({"starting", "processing"})
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "canceled", "aborted"})


@dataclass(frozen=True)
class Prediction:
    """One row: a job step's prediction and where it stands."""

    id: str
    job_id: str
    step: str
    attempt: int
    workflow_id: str
    provider: str
    model: str
    provider_model: str
    input_digest: str
    provider_input: Any
    state: str
    prediction_id: str | None
    provider_status: str | None
    progress: int | None
    output: Any
    error: str | None
    completed_by: str | None
    run_id: str | None
    created_at: float
    updated_at: float
    completed_at: float | None
    expected_at: float | None
    next_poll_at: float | None
    handed_off_at: float | None
    polls: int

    @property
    def succeeded(self) -> bool:
        """Whether the provider finished it with an output."""
        return self.provider_status == "succeeded"

    @property
    def terminal(self) -> bool:
        """Whether the provider has finished with it, one way or another."""
        return self.provider_status in TERMINAL_STATUSES

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> Prediction:
        """A row of `wf_predictions` as a Prediction (JSON columns decoded)."""
        values = {f.name: row[f.name] for f in fields(cls)}
        for name in ("provider_input", "output"):
            values[name] = json.loads(values[name]) if values[name] is not None else None
        values["polls"] = values["polls"] or 0
        return cls(**values)

    def public(self) -> dict[str, Any]:
        """What the API may show of it (API.md, a step waiting on its provider)."""
        shown: dict[str, Any] = {
            "name": self.provider,
            "prediction_id": self.prediction_id,
            "status": self.provider_status or "starting",
        }
        if self.progress is not None:
            shown["progress"] = self.progress
        return shown


def input_digest(model: str, provider_model: str, provider_input: Mapping[str, Any]) -> str:
    """A stable hash of what a prediction is asked, to refuse reusing one asked otherwise."""
    text = json.dumps([model, provider_model, dict(provider_input)], sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, default=str)


class PredictionStore:
    """Compare-and-set transitions over `wf_predictions`; `clock()` is now in epoch seconds."""

    def __init__(self, url: str, clock: Clock = time.time, engine: Engine | None = None) -> None:
        self.url = url
        self.clock = clock
        self.engine = engine or engine_for(url)

    def close(self) -> None:
        """Close the engine's pooled connections."""
        self.engine.dispose()

    # -- reads ----------------------------------------------------------------------------

    def get(self, intent_id: str) -> Prediction | None:
        """One row by intent id."""
        return self._one(predictions.c.id == intent_id)

    def by_prediction_id(self, prediction_id: str) -> Prediction | None:
        """One row by the provider's prediction id."""
        return self._one(predictions.c.prediction_id == prediction_id)

    def latest(self, job_id: str, step: str) -> Prediction | None:
        """The newest row of one job step."""
        query = (
            sa.select(predictions)
            .where(predictions.c.job_id == job_id, predictions.c.step == step)
            .order_by(predictions.c.created_at.desc(), predictions.c.id.desc())
            .limit(1)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return Prediction.from_row(row) if row else None

    def for_jobs(self, job_ids: Iterable[str]) -> dict[str, list[Prediction]]:
        """Every row of these jobs, oldest first, in one query."""
        ids = sorted(set(job_ids))
        found: dict[str, list[Prediction]] = {job_id: [] for job_id in ids}
        if not ids:
            return found
        query = (
            sa.select(predictions)
            .where(predictions.c.job_id.in_(ids))
            .order_by(predictions.c.created_at, predictions.c.id)
        )
        with self.engine.connect() as conn:
            for row in conn.execute(query).mappings():
                found[row["job_id"]].append(Prediction.from_row(row))
        return found

    def for_job(self, job_id: str) -> list[Prediction]:
        """Every row of one job, oldest first."""
        return self.for_jobs([job_id])[job_id]

    def due_for_poll(self, limit: int, now: float | None = None) -> list[Prediction]:
        """Parked predictions whose next poll time has come (by `now`), most overdue first."""
        now = self.clock() if now is None else now
        return self._many(
            sa.and_(predictions.c.state == PARKED, predictions.c.next_poll_at <= now),
            predictions.c.next_poll_at,
            limit,
        )

    def ready_for_handoff(
        self, limit: int, stale_after: float, now: float | None = None
    ) -> list[Prediction]:
        """Completed predictions with no continuation yet, or whose hand-off went stale."""
        stale = (self.clock() if now is None else now) - stale_after
        return self._many(
            sa.or_(
                predictions.c.state == COMPLETED,
                sa.and_(predictions.c.state == HANDED_OFF, predictions.c.handed_off_at <= stale),
            ),
            predictions.c.completed_at,
            limit,
        )

    def cancel_requests(self, limit: int) -> list[Prediction]:
        """Predictions of cancelled jobs that the provider should stop."""
        return self._many(predictions.c.state == CANCEL_REQUESTED, predictions.c.updated_at, limit)

    def count_by_state(self) -> dict[str, int]:
        """How many rows are in each state."""
        query = sa.select(predictions.c.state, sa.func.count()).group_by(predictions.c.state)
        with self.engine.connect() as conn:
            return {state: count for state, count in conn.execute(query)}

    # -- transitions ----------------------------------------------------------------------

    def intend(
        self,
        *,
        job_id: str,
        step: str,
        attempt: int,
        workflow_id: str,
        provider: str,
        model: str,
        provider_model: str,
        input_digest: str,
        provider_input: Any,
        run_id: str | None,
    ) -> Prediction:
        """Record the intent to create a prediction, before the provider is called."""
        now = self.clock()
        # Time-ordered (UUIDv7): two intents of one step never tie in `latest`.
        intent_id = new_job_id(now).replace("-", "")
        values = {
            "id": intent_id,
            "job_id": job_id,
            "step": step,
            "attempt": attempt,
            "workflow_id": workflow_id,
            "provider": provider,
            "model": model,
            "provider_model": provider_model,
            "input_digest": input_digest,
            "provider_input": _json(provider_input),
            "state": CREATING,
            "run_id": run_id,
            "created_at": now,
            "updated_at": now,
            "polls": 0,
        }
        with self.engine.begin() as conn:
            conn.execute(predictions.insert().values(**values))
            _project(conn, predictions.c.id == intent_id)
        found = self.get(intent_id)
        assert found is not None
        return found

    def created(
        self,
        intent_id: str,
        prediction_id: str,
        status: str,
        next_poll_at: float,
        expected_at: float | None = None,
        output: Any = None,
        error: str | None = None,
    ) -> Prediction:
        """The provider accepted the create: the row is parked (or completed, if final).

        A webhook that arrived before this (it names the prediction id only) is applied now.
        """
        now = self.clock()
        terminal = status in TERMINAL_STATUSES
        with self.engine.begin() as conn:
            conn.execute(
                predictions.update()
                .where(predictions.c.id == intent_id, predictions.c.state == CREATING)
                .values(
                    prediction_id=prediction_id,
                    provider_status=status,
                    state=COMPLETED if terminal else PARKED,
                    completed_by="create" if terminal else None,
                    completed_at=now if terminal else None,
                    output=_json(output),
                    error=error,
                    next_poll_at=next_poll_at,
                    expected_at=expected_at,
                    updated_at=now,
                )
            )
            # Cancelled while the create was in flight: keep the id, so the sensor can
            # stop the prediction at the provider.
            conn.execute(
                predictions.update()
                .where(
                    predictions.c.id == intent_id,
                    predictions.c.state == CANCEL_REQUESTED,
                    predictions.c.prediction_id.is_(None),
                )
                .values(prediction_id=prediction_id, provider_status=status, updated_at=now)
            )
            _project(conn, predictions.c.id == intent_id)
            early = conn.execute(
                sa.select(webhook_events.c.body)
                .where(webhook_events.c.prediction_id == prediction_id)
                .order_by(webhook_events.c.received_at)
            ).all()
        for (body,) in early:
            # The creating run goes on to consume it: no continuation to wake.
            self.apply_provider_update(json.loads(body), "webhook", intent_id, wake=False)
        found = self.get(intent_id)
        assert found is not None
        return found

    def apply_provider_update(
        self,
        prediction: Mapping[str, Any],
        source: str,
        intent_id: str | None = None,
        wake: bool = True,
    ) -> bool:
        """A provider's view of a prediction (webhook body or poll answer); True if it moved.

        A terminal status completes a row that is parked (or still creating, when the
        webhook beat the create's answer); a running status only updates the status and
        progress of a parked row. Anything else (an older or repeated view) is a no-op.
        A completion wakes the warm continuation worker (NOTIFY, in the same transaction)
        unless the run that created it sees it (`source` "run", or `wake` False): that run
        consumes it itself.
        """
        prediction_id = str(prediction.get("id") or "")
        status = str(prediction.get("status") or "")
        if not prediction_id or not status:
            return False
        now = self.clock()
        match = predictions.c.prediction_id == prediction_id
        if intent_id:
            match = sa.or_(
                match,
                sa.and_(predictions.c.id == intent_id, predictions.c.prediction_id.is_(None)),
            )
        progress = prediction.get("progress")
        if status in TERMINAL_STATUSES:
            values: dict[str, Any] = {
                "prediction_id": prediction_id,
                "state": COMPLETED,
                "provider_status": status,
                "output": _json(prediction.get("output")),
                "error": _error_text(prediction.get("error")),
                "completed_by": source,
                "completed_at": now,
                "updated_at": now,
            }
            if progress is not None or status == "succeeded":
                values["progress"] = 100 if status == "succeeded" else progress
            allowed: tuple[str, ...] = (CREATING, PARKED)
        elif status in RUNNING_STATUSES:
            values = {"provider_status": status, "updated_at": now}
            if progress is not None:
                values["progress"] = int(progress)
            allowed = (PARKED,)
        else:
            return False
        update = (
            predictions.update().where(match, predictions.c.state.in_(allowed)).values(**values)
        )
        with self.engine.begin() as conn:
            if status in TERMINAL_STATUSES and wake and source != "run" and is_postgres(conn):
                moved = list(conn.execute(update.returning(predictions.c.id)).scalars())
                if moved:
                    _project(conn, predictions.c.id.in_(moved))
                for moved_id in moved:
                    notify(conn, COMPLETED_CHANNEL, moved_id)
                return bool(moved)
            result = conn.execute(update)
            if result.rowcount:
                _project(conn, predictions.c.prediction_id == prediction_id)
        return bool(result.rowcount)

    def record_webhook(
        self, webhook_id: str, body: Mapping[str, Any], intent_id: str | None = None
    ) -> bool:
        """Keep a webhook delivery once (by its id) and apply it; False for a repeat."""
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    webhook_events.insert().values(
                        webhook_id=webhook_id,
                        prediction_id=str(body.get("id") or "") or None,
                        intent_id=intent_id,
                        status=str(body.get("status") or "") or None,
                        body=json.dumps(dict(body), default=str),
                        received_at=self.clock(),
                    )
                )
        except IntegrityError:
            return False
        self.apply_provider_update(body, "webhook", intent_id=intent_id)
        return True

    def restate_input(self, intent_id: str, provider_input: Any) -> Prediction | None:
        """A create is about to be sent again for a `creating` intent, with this input."""
        if self._move(intent_id, (CREATING,), provider_input=_json(provider_input)):
            return self.get(intent_id)
        return None

    def polled(
        self, intent_id: str, status: str, progress: int | None, next_poll_at: float
    ) -> None:
        """A poll saw the prediction still running: note it and schedule the next poll."""
        now = self.clock()
        values: dict[str, Any] = {
            "provider_status": status,
            "next_poll_at": next_poll_at,
            "updated_at": now,
            "polls": predictions.c.polls + 1,
        }
        if progress is not None:
            values["progress"] = progress
        self._move(intent_id, (PARKED,), **values)

    def hand_off(self, intent_ids: Iterable[str], now: float | None = None) -> None:
        """Continuation runs were requested for these completed predictions."""
        now = self.clock() if now is None else now
        ids = list(intent_ids)
        with self.engine.begin() as conn:
            conn.execute(
                predictions.update()
                .where(
                    predictions.c.id.in_(ids),
                    predictions.c.state.in_((COMPLETED, HANDED_OFF)),
                )
                .values(state=HANDED_OFF, handed_off_at=now, updated_at=now)
            )
            _project(conn, predictions.c.id.in_(ids))

    def take_for_handoff(self, row: Prediction, now: float | None = None) -> bool:
        """Claim one continuation of `row` as read (`completed`, or a stale `handed_off`):
        a compare-and-set from that very state, so of two claimers (the warm worker, the
        parked-steps sensor, a second worker) exactly one continues it."""
        now = self.clock() if now is None else now
        if row.state not in (COMPLETED, HANDED_OFF):
            return False
        with self.engine.begin() as conn:
            result = conn.execute(
                predictions.update()
                .where(
                    predictions.c.id == row.id,
                    predictions.c.state == row.state,
                    predictions.c.handed_off_at.is_not_distinct_from(row.handed_off_at),
                )
                .values(state=HANDED_OFF, handed_off_at=now, updated_at=now)
            )
            if result.rowcount:
                _project(conn, predictions.c.id == row.id)
        return bool(result.rowcount)

    def claim(self, intent_id: str, run_id: str) -> Prediction | None:
        """A run takes a completed prediction to store its output; None if it may not.

        The queue lets one run of a job be in progress, so a row left `consuming` by a
        run that died is taken over by the job's next run.
        """
        moved = self._move(
            intent_id, (COMPLETED, HANDED_OFF, CONSUMING), state=CONSUMING, run_id=run_id
        )
        return self.get(intent_id) if moved else None

    def consumed(self, intent_id: str) -> bool:
        """The run stored the output (or raised the prediction's failure): final."""
        return self._move(intent_id, (CONSUMING,), state=CONSUMED)

    def abandon(self, intent_id: str, reason: str) -> bool:
        """Give up on a prediction that can no longer serve its step."""
        allowed = (CREATING, PARKED, COMPLETED, HANDED_OFF, CONSUMING, CANCEL_REQUESTED)
        return self._move(intent_id, allowed, state=ABANDONED, error=reason)

    def expired(self, intent_id: str, reason: str) -> bool:
        """The provider no longer has the prediction or its output: a new one is needed."""
        return self._move(
            intent_id, (PARKED, COMPLETED, HANDED_OFF, CONSUMING), state=ABANDONED, error=reason
        )

    def request_cancel(self, job_id: str) -> int:
        """The job was cancelled: its live predictions are to be stopped at the provider."""
        now = self.clock()
        with self.engine.begin() as conn:
            result = conn.execute(
                predictions.update()
                .where(
                    predictions.c.job_id == job_id,
                    predictions.c.state.in_((CREATING, PARKED, COMPLETED, HANDED_OFF)),
                )
                .values(state=CANCEL_REQUESTED, updated_at=now)
            )
            if result.rowcount:
                _project(conn, predictions.c.job_id == job_id)
        return int(result.rowcount)

    # -- helpers --------------------------------------------------------------------------

    def _move(self, intent_id: str, allowed: tuple[str, ...], **values: Any) -> bool:
        values.setdefault("updated_at", self.clock())
        with self.engine.begin() as conn:
            result = conn.execute(
                predictions.update()
                .where(predictions.c.id == intent_id, predictions.c.state.in_(allowed))
                .values(**values)
            )
            if result.rowcount:
                _project(conn, predictions.c.id == intent_id)
        return bool(result.rowcount)

    def _one(self, condition: Any) -> Prediction | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(predictions).where(condition)).mappings().first()
        return Prediction.from_row(row) if row else None

    def _many(self, condition: Any, order: Any, limit: int) -> list[Prediction]:
        query = sa.select(predictions).where(condition).order_by(order).limit(limit)
        with self.engine.connect() as conn:
            return [Prediction.from_row(row) for row in conn.execute(query).mappings()]


_shared: dict[tuple[int, str], PredictionStore] = {}
_shared_lock = threading.Lock()


def shared_store(url: str) -> PredictionStore:
    """This process's store for `url`, on its shared engine, the database at the newest
    revision (upgraded on first use; raises while the database does not answer)."""
    engine = open_state_db(url)
    key = (os.getpid(), url)
    with _shared_lock:
        store = _shared.get(key)
        if store is None:
            store = _shared[key] = PredictionStore(url, engine=engine)
        return store


def _project(conn: sa.Connection, condition: Any) -> None:
    """Fold the rows just written into their jobs' read-model rows, in this transaction."""
    project_predictions(conn, predictions, condition)


def _error_text(error: Any) -> str | None:
    if error is None or error == "":
        return None
    return error if isinstance(error, str) else json.dumps(error, default=str)
