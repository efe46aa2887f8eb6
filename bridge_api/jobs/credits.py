"""Credits (CREDITS=on): held at execute, captured per step, released on failure or cancel.

The money rules every caller shares (user routes, admin routes, `wf-admin`). `GET
/credits` shows the caller's account and ledger (routes/credits.py); `POST
/admin/credits/grant` and `wf-credits grant <user> <amount>` (cli/credits.py) add
credits. The credits sensor settles each job's hold as its steps complete
(sensors/credits.py); cancel settles at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flask import current_app

from bridge_api.http.auth import current_user
from bridge_api.http.errors import ApiError
from bridge_api.stores.predictions import prediction_store
from wf_core.specs import WorkflowSpec
from wf_core.times import epoch_seconds_to_iso
from wf_store.credits import (
    GRANT,
    CreditStore,
    Entry,
    HoldChanged,
    InsufficientCredits,
    step_shares,
)


def credits_on() -> bool:
    """Whether credits are on (CREDITS=on; off by default, as in the demo)."""
    value = current_app.config.get("CREDITS") or "off"
    return str(value).lower() == "on"


def credit_store() -> CreditStore:
    """The ledger, on the app's state database."""
    return CreditStore(prediction_store().engine)


def _refused(exc: InsufficientCredits) -> ApiError:
    return ApiError(
        402,
        "insufficient_credits",
        f"This workflow needs {exc.required} credits; your balance is {exc.balance}",
        balance=exc.balance,
        required=exc.required,
    )


def reserve_for_job(spec: WorkflowSpec, job_id: str) -> None:
    """Hold the workflow's credits_cost for a new job, or refuse with 402 (holds nothing)."""
    if not credits_on():
        return
    try:
        credit_store().reserve(current_user(), job_id, spec.id, step_shares(spec))
    except InsufficientCredits as exc:
        raise _refused(exc) from None


def reserve_for_retry(job_id: str, completed: Iterable[str]) -> None:
    """A retry of a job whose hold was released holds its unfinished steps again (402)."""
    if not credits_on():
        return
    try:
        credit_store().reserve_again(job_id, completed)
    except InsufficientCredits as exc:
        raise _refused(exc) from None
    except HoldChanged:
        raise ApiError(409, "invalid_state", "a retry of this job is already starting") from None


def settle_job(job_id: str, completed: Iterable[str], final: str | None) -> None:
    """Capture completed steps and, for a final job, release the rest (never fails a request:
    the credits sensor settles whatever is left here)."""
    if not credits_on():
        return
    try:
        credit_store().settle(job_id, completed, final)
    except Exception:
        current_app.logger.exception("job %s: credits not settled now; the sensor will", job_id)


def ledger_time(epoch: float) -> str:
    """A ledger time as API.md shows it."""
    return epoch_seconds_to_iso(epoch)


def entry_view(entry: Entry) -> dict[str, Any]:
    """One ledger row as API.md shows it."""
    return {
        "job_id": None if entry.kind == GRANT else entry.job_id,
        "step": entry.step or None,
        "kind": entry.kind,
        "amount": entry.amount,
        "reason": entry.reason,
        "at": ledger_time(entry.at),
    }
