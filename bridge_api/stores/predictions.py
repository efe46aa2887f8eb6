"""The bridge's view of the prediction store: one shared store per process, and which
prediction a running job's step is waiting on.

The store is opened on first use (after gunicorn has forked), one per process and
database URL; a test injects its own as `app.config["PREDICTION_STORE"]`. Reads for
display never fail a request: a store that cannot be read shows no provider block.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from flask import current_app
from sqlalchemy.exc import SQLAlchemyError

from wf_core.job_state import JobState
from wf_core.settings import state_db_url
from wf_store.predictions import (
    CREATING,
    PARKED,
    RUNNING_STATUSES,
    Prediction,
    PredictionStore,
    shared_store,
)

log = logging.getLogger(__name__)
# A prediction in these states still runs at the provider (API.md: starting|processing).
AT_PROVIDER = (CREATING, PARKED)

_unreachable = False


def prediction_store() -> PredictionStore:
    """This process's store for the app's database (PREDICTION_STORE in tests)."""
    injected = current_app.config.get("PREDICTION_STORE")
    if injected is not None:
        return injected
    return shared_store(current_app.config.get("STATE_DB_URL") or state_db_url())


def predictions_of(job_ids: Iterable[str]) -> dict[str, list[Prediction]] | None:
    """Every row of these jobs in one query, oldest first; None if the store is unreachable."""
    ids = list(job_ids)
    if not ids:
        return {}
    global _unreachable
    try:
        found = prediction_store().for_jobs(ids)
    except (SQLAlchemyError, OSError) as exc:
        if not _unreachable:  # once per outage, not once per stream poll
            log.warning("prediction store unreachable, provider progress left out: %s", exc)
        _unreachable = True
        return None
    if _unreachable:
        log.info("prediction store reachable again")
    _unreachable = False
    return found


def running_step(state: JobState) -> str | None:
    """The step a running job is on: the parked one, else its first step left to run."""
    if state.status != "running":
        return None
    return state.parked_step or (state.next_steps[0] if state.next_steps else None)


def waiting_prediction(state: JobState, rows: Sequence[Prediction]) -> Prediction | None:
    """The prediction the running step waits on at its provider: the step's newest row,
    if it is still being created or is parked and the provider has not finished it."""
    step = running_step(state)
    if step is None:
        return None
    newest = next((row for row in reversed(rows) if row.step == step), None)
    if newest is None or newest.state not in AT_PROVIDER:
        return None
    return newest if (newest.provider_status or "starting") in RUNNING_STATUSES else None
