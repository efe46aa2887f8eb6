"""Standard Webhooks signatures, as Replicate sends them (and as we sign our own).

A delivery carries `webhook-id`, `webhook-timestamp` (integer seconds) and
`webhook-signature`: space-separated `v1,<base64 HMAC-SHA256>` entries, any one of which
may match (a sender rotating its secret signs with both). The signed content is
`<id>.<timestamp>.<raw body>`; the key is the base64-decoded secret after `whsec_`.
The timestamp must be within `tolerance` seconds of `now`, either way: a captured
delivery cannot be replayed later. Time is a parameter; nothing here reads a clock.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

SECRET_PREFIX = "whsec_"
DEFAULT_TOLERANCE_SECONDS = 300.0
ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"


class SignatureError(Exception):
    """A delivery whose signature cannot be accepted; `code` names the reason."""

    code = "invalid_signature"


class MissingHeadersError(SignatureError):
    """A signature header is absent or empty."""

    code = "missing_signature"


class TimestampError(SignatureError):
    """The timestamp is not a whole number of seconds, or too far from now."""

    code = "invalid_timestamp"


class BadSecretError(ValueError):
    """The configured secret is not `whsec_<base64>` (a deployment error, not a caller's)."""


@dataclass(frozen=True)
class VerifiedDelivery:
    """A delivery whose signature matched: its id (the dedup key) and timestamp."""

    webhook_id: str
    timestamp: int


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_...` secret (the prefix is optional); BadSecretError if none."""
    text = secret.strip()
    if text.startswith(SECRET_PREFIX):
        text = text[len(SECRET_PREFIX) :]
    try:
        # Padding added: some secrets are given unpadded; b64decode ignores extra padding.
        key = base64.b64decode(text + "==", validate=False)
    except (binascii.Error, ValueError):
        raise BadSecretError("the webhook secret is not base64 after 'whsec_'") from None
    if not key:
        raise BadSecretError("the webhook secret is empty")
    return key


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes | str) -> str:
    """The `v1,<base64>` signature of one delivery."""
    raw = body.encode("utf-8") if isinstance(body, str) else body
    content = f"{webhook_id}.{timestamp}.".encode() + raw
    digest = hmac.new(secret_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if value is None:  # a plain dict with other capitalisation
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    if not value or not value.strip():
        raise MissingHeadersError(f"the {name} header is missing")
    return value.strip()


def _timestamp(text: str, now: float, tolerance: float) -> int:
    if not text.isascii() or not text.isdigit():
        raise TimestampError("webhook-timestamp is not a whole number of seconds")
    timestamp = int(text)
    if timestamp < now - tolerance:
        raise TimestampError("webhook-timestamp is too old")
    if timestamp > now + tolerance:
        raise TimestampError("webhook-timestamp is in the future")
    return timestamp


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes | str,
    now: float,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
) -> VerifiedDelivery:
    """Check one delivery against `secret` at time `now`; raises SignatureError if refused."""
    webhook_id = _header(headers, ID_HEADER)
    stamp = _header(headers, TIMESTAMP_HEADER)
    signatures = _header(headers, SIGNATURE_HEADER)
    timestamp = _timestamp(stamp, now, tolerance)
    expected = sign(secret, webhook_id, timestamp, body).encode("ascii")
    matched = False
    for entry in signatures.split():
        version, _, _ = entry.partition(",")
        if version != "v1":
            continue  # other schemes (v1a: asymmetric) are not ours to check
        # Every entry is compared (no early exit): the time taken says nothing of which matched.
        matched |= hmac.compare_digest(entry.encode("utf-8"), expected)
    if not matched:
        raise SignatureError("no webhook-signature matches")
    return VerifiedDelivery(webhook_id, timestamp)
