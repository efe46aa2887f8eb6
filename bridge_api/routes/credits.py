"""`GET /credits` (the caller's account and ledger) and `POST /admin/credits/grant` (a token
whose `app_metadata.role` is `admin`; anyone else gets 404). The rules are in
jobs/credits.py."""

from __future__ import annotations

from flask import Blueprint, g, jsonify, request

from bridge_api.http.auth import current_user, require_user
from bridge_api.http.errors import ApiError
from bridge_api.jobs.credits import credit_store, credits_on, entry_view

bp = Blueprint("credits", __name__)


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
