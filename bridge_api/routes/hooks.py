"""`POST /hooks/replicate`: Replicate's webhook receiver (API.md).

No bearer token and no per-user rate limit: the caller is Replicate, which proves itself
with a Standard Webhooks signature over the raw body (secret REPLICATE_WEBHOOK_SECRET).
The signature is checked before the body is parsed; a refused delivery writes nothing.
An accepted one is kept once by its `webhook-id` and applied to its prediction's row
(`?intent=` names the row when the webhook beats the create call's answer); the parked-
steps sensor hands the completed prediction to a continuation run. The answer is a 204
straight away: a repeated delivery is a no-op and still a 204, so Replicate stops sending.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from flask import Blueprint, Response, current_app, request
from sqlalchemy.exc import SQLAlchemyError

from bridge_api.http.errors import ApiError
from bridge_api.http.limits import limiter
from bridge_api.stores.predictions import prediction_store
from wf_core.webhook_signature import SignatureError, verify

bp = Blueprint("hooks", __name__, url_prefix="/hooks")
CLOCK = "hooks_clock"  # app.extensions key: a test's clock, else time.time
INTENT_ID = re.compile(r"[0-9a-f]{32}")  # wf_store intent ids: uuid4().hex
MAX_WEBHOOK_ID = 200  # the store's column


def _refuse(code: str, message: str) -> ApiError:
    return ApiError(401, code, message)


def _verified_id(raw: bytes) -> str:
    secret = current_app.config.get("REPLICATE_WEBHOOK_SECRET")
    if not secret:
        current_app.logger.warning("webhook refused: REPLICATE_WEBHOOK_SECRET is not set")
        raise _refuse("webhooks_disabled", "This bridge takes no webhooks (no signing secret)")
    now = current_app.extensions.get(CLOCK, time.time)()
    try:
        delivery = verify(secret, dict(request.headers.items()), raw, now=now)
    except SignatureError as exc:
        raise _refuse(exc.code, f"Webhook refused: {exc}") from None
    if len(delivery.webhook_id) > MAX_WEBHOOK_ID:
        raise ApiError(400, "invalid_webhook_id", "webhook-id is too long")
    return delivery.webhook_id


def _prediction(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise ApiError(400, "invalid_json", "The body is not JSON") from None
    valid = isinstance(body, dict) and all(
        isinstance(body.get(key), str) and body[key] for key in ("id", "status")
    )
    if not valid:
        raise ApiError(400, "invalid_body", "The body must be a prediction with id and status")
    return body


@bp.post("/replicate")
@limiter.exempt
def replicate() -> Response:
    """Record one signed Replicate webhook delivery."""
    raw = request.get_data(cache=False)
    webhook_id = _verified_id(raw)
    body = _prediction(raw)
    intent = request.args.get("intent") or None
    if intent is not None and not INTENT_ID.fullmatch(intent):
        # Not one of ours (the query is not signed): the prediction id still finds the row.
        log = current_app.logger
        log.warning("webhook %s: ignoring malformed intent %r", webhook_id, intent[:64])
        intent = None
    try:
        prediction_store().record_webhook(webhook_id, body, intent_id=intent)
    except (SQLAlchemyError, OSError):
        current_app.logger.exception("webhook %s not recorded: store unreachable", webhook_id)
        # Not a 2xx: Replicate sends it again, and the poller reads the prediction meanwhile.
        raise ApiError(
            503,
            "store_unavailable",
            "The prediction store is unreachable",
            headers={"Retry-After": "5"},
        ) from None
    return Response(status=204)
