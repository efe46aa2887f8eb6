"""Credits (CREDITS=on): held at execute, captured per step, released on failure or cancel.

`GET /credits` shows the caller's account and ledger; `POST /admin/credits/grant` (a token
whose `app_metadata.role` is `admin`, anyone else gets 404) and `python -m
bridge_api.credits grant <user> <amount>` add credits. The credits sensor settles each
job's hold as its steps complete (sensors/credits.py); cancel settles at once.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, current_app, g, jsonify, request

from bridge_api.auth import current_user, require_user
from bridge_api.errors import ApiError
from bridge_api.predictions import prediction_store
from wf_core.specs import WorkflowSpec
from wf_store.credits import (
    GRANT,
    CreditStore,
    Entry,
    HoldChanged,
    InsufficientCredits,
    step_shares,
)

bp = Blueprint("credits", __name__)


def credits_on() -> bool:
    """Whether credits are on (CREDITS=on; off by default, as in the demo)."""
    value = current_app.config.get("CREDITS") or os.environ.get("CREDITS") or "off"
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


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


def entry_view(entry: Entry) -> dict[str, Any]:
    """One ledger row as API.md shows it."""
    return {
        "job_id": None if entry.kind == GRANT else entry.job_id,
        "step": entry.step or None,
        "kind": entry.kind,
        "amount": entry.amount,
        "reason": entry.reason,
        "at": _iso(entry.at),
    }


@bp.get("/credits")
@require_user
def account():
    """The caller's balance, what is held for jobs in flight, and the ledger, newest first."""
    try:
        limit = int(request.args.get("limit", 50))
        before = int(request.args["cursor"]) if request.args.get("cursor") else None
    except ValueError:
        raise ApiError(400, "invalid_cursor", "limit and cursor must be whole numbers") from None
    if not 1 <= limit <= 200:
        raise ApiError(400, "invalid_limit", "limit must be between 1 and 200")
    if before is not None and not 0 < before < 2**62:
        raise ApiError(400, "invalid_cursor", "cursor must be a next_cursor of this route")
    store = credit_store()
    found = store.account(current_user())
    entries, cursor = store.entries(current_user(), limit, before)
    return jsonify(
        {
            "balance": found.balance,
            "reserved": found.reserved,
            "credits_enabled": credits_on(),
            "entries": [entry_view(e) for e in entries],
            "next_cursor": str(cursor) if cursor is not None else None,
        }
    )


def _require_admin() -> None:
    app_metadata = (g.get("auth_claims") or {}).get("app_metadata") or {}
    if not isinstance(app_metadata, dict) or app_metadata.get("role") != "admin":
        raise ApiError(404, "not_found", "The requested URL was not found on the server.")


@bp.post("/admin/credits/grant")
@require_user
def grant():
    """Add credits to a user's balance (admins only; everyone else sees a 404)."""
    _require_admin()
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "the body must be a JSON object")
    user_id, amount, reason = body.get("user_id"), body.get("amount"), body.get("reason")
    if not isinstance(user_id, str) or not 1 <= len(user_id) <= 200:
        raise ApiError(422, "invalid_options", "user_id must be a string", field="user_id")
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= 10**9:
        raise ApiError(422, "invalid_options", "amount must be a positive whole number")
    if reason is not None and not isinstance(reason, str):
        raise ApiError(422, "invalid_options", "reason must be a string", field="reason")
    reference = body.get("reference")
    if reference is not None and (not isinstance(reference, str) or not reference):
        raise ApiError(422, "invalid_options", "reference must be a string", field="reference")
    store = credit_store()
    by = current_user()
    granted = store.grant(
        user_id, amount, reason or f"granted by {by}", f"grant:{reference}" if reference else None
    )
    found = store.account(user_id)
    return jsonify(
        {
            "user_id": user_id,
            "granted": amount if granted else 0,
            "balance": found.balance,
            "reserved": found.reserved,
        }
    )


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m bridge_api.credits grant <user> <amount> [--reason ..]` or `show <user>`."""
    from wf_core.settings import state_db_url
    from wf_store.state_db import open_state_db

    parser = argparse.ArgumentParser(prog="wf-credits", description=main.__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    add = sub.add_parser("grant", help="add credits to a user's balance")
    add.add_argument("user_id")
    add.add_argument("amount", type=int)
    add.add_argument("--reason", default="granted from the command line")
    add.add_argument("--reference", default=None, help="a grant with one reference counts once")
    show = sub.add_parser("show", help="a user's balance, reserved credits and last entries")
    show.add_argument("user_id")
    args = parser.parse_args(argv)
    store = CreditStore(open_state_db(state_db_url()))
    if args.command == "grant":
        if args.amount <= 0:
            parser.error("amount must be positive")
        reference = f"grant:{args.reference}" if args.reference else None
        if not store.grant(args.user_id, args.amount, args.reason, reference):
            print(f"reference {args.reference!r} was already granted", file=sys.stderr)
    found = store.account(args.user_id)
    print(f"{found.user_id}: balance {found.balance}, reserved {found.reserved}")
    if args.command == "show":
        for entry in store.entries(args.user_id, limit=20)[0]:
            print(
                f"  {_iso(entry.at)} {entry.kind:8} {entry.amount:>8} {entry.job_id} {entry.step}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
