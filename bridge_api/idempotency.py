"""`Idempotency-Key` on POST /workflows/execute: a repeat gets the first answer again.

The first request with a key claims it (a row, insert first) before doing anything and
stores its answer when done; a refused request gives the claim up, so it stores nothing.
A duplicate arriving while the first is still at work waits for its answer (at most
IDEMPOTENCY_WAIT_SECONDS, then 409 `idempotency_key_in_use` with Retry-After).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from flask import current_app, jsonify, request

from bridge_api.auth import current_user
from bridge_api.errors import ApiError
from bridge_api.predictions import prediction_store
from wf_store.idempotency import MAX_KEY_LENGTH, IdempotencyStore, Stored

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"


def idempotency_store() -> IdempotencyStore:
    """The keys, on the app's state database."""
    return IdempotencyStore(prediction_store().engine)


def _key() -> str | None:
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
        raise ApiError(
            400,
            "invalid_idempotency_key",
            f"{HEADER} must be 1 to {MAX_KEY_LENGTH} printable ASCII characters",
        )
    return key


def _replay(found: Stored) -> Any:
    body = json.loads(found.body or "{}")
    return jsonify(body), found.status, {REPLAYED: "true"}


def idempotent(run: Callable[[], tuple[dict[str, Any], int]]) -> Any:
    """Answer with `run()` once per (user, key); repeats within 24 h replay that answer."""
    key = _key()
    if key is None:
        body, status = run()
        return jsonify(body), status
    store, user = idempotency_store(), current_user()
    wait = float(current_app.config.get("IDEMPOTENCY_WAIT_SECONDS", 30))
    for _ in range(3):
        found = store.claim(user, key)
        if found is None:
            break
        if not found.answered:
            found = store.wait(user, key, timeout=wait)
            if found is None:
                continue  # the first request was refused: this one tries for itself
            if not found.answered:
                raise ApiError(
                    409,
                    "idempotency_key_in_use",
                    f"A request with this {HEADER} is still being handled",
                    headers={"Retry-After": "1"},
                )
        return _replay(found)
    else:
        raise ApiError(409, "idempotency_key_in_use", f"{HEADER} is contended; try again")
    try:
        body, status = run()
    except BaseException:
        store.release(user, key)
        raise
    store.answer(user, key, status, json.dumps(body))
    return jsonify(body), status
