"""`Idempotency-Key` on POST /workflows/execute: a repeat gets the first answer again.

The first request with a key claims it (a row, insert first) before doing anything and
stores its answer when done; a refused request gives the claim up, so it stores nothing.
A duplicate arriving while the first is still at work waits for its answer (at most
IDEMPOTENCY_WAIT_SECONDS, then 409 `idempotency_key_in_use` with Retry-After). A key
reused with a different request (another workflow, other options or callback, another
file) is a 422 `idempotency_key_reused`, as Stripe and the IETF draft answer: the
claim keeps a digest of the request it was first used with.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from flask import current_app, jsonify, request

from bridge_api.http.auth import current_user
from bridge_api.http.errors import ApiError
from bridge_api.stores.predictions import prediction_store
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


def request_digest() -> str:
    """A digest of what this request asks for: its form fields and each file's content."""
    digest = hashlib.sha256()
    # By name only, as text: a repeated field keeps its values' order, and a part whose
    # name the parser could not read (None) still sorts.
    parts: list[Any] = sorted(request.form.items(multi=True), key=lambda pair: str(pair[0]))
    for field, upload in sorted(request.files.items(multi=True), key=lambda pair: str(pair[0])):
        content = hashlib.sha256()
        while chunk := upload.stream.read(1 << 16):
            content.update(chunk)
        upload.stream.seek(0)  # the request reads it again
        parts.append((field, upload.filename or "", content.hexdigest()))
    digest.update(json.dumps([request.path, parts]).encode())
    return digest.hexdigest()


def _check_same_request(found: Stored, digest: str) -> None:
    """A key claimed by another request is refused (a claim from before digests is not)."""
    if found.request_digest and found.request_digest != digest:
        raise ApiError(
            422,
            "idempotency_key_reused",
            f"This {HEADER} was used with a different request; use a new key for a new job",
        )


def _replay(found: Stored, digest: str) -> Any:
    _check_same_request(found, digest)
    body = json.loads(found.body or "{}")
    return jsonify(body), found.status, {REPLAYED: "true"}


def idempotent(run: Callable[[], tuple[dict[str, Any], int]]) -> Any:
    """Answer with `run()` once per (user, key); repeats within 24 h replay that answer."""
    key = _key()
    if key is None:
        body, status = run()
        return jsonify(body), status
    store, user = idempotency_store(), current_user()
    digest = request_digest()
    wait = float(current_app.config.get("IDEMPOTENCY_WAIT_SECONDS", 30))
    for _ in range(3):
        found = store.claim(user, key, digest)
        if found is None:
            break
        if not found.answered:
            found = store.wait(user, key, timeout=wait)
            if found is None:
                continue  # the first request was refused: this one tries for itself
            if not found.answered:
                _check_same_request(found, digest)
                raise ApiError(
                    409,
                    "idempotency_key_in_use",
                    f"A request with this {HEADER} is still being handled",
                    headers={"Retry-After": "1"},
                )
        return _replay(found, digest)
    else:
        raise ApiError(409, "idempotency_key_in_use", f"{HEADER} is contended; try again")
    try:
        body, status = run()
    except BaseException:
        store.release(user, key)
        raise
    store.answer(user, key, status, json.dumps(body))
    return jsonify(body), status
