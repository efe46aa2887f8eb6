"""Standard Webhooks verification: the spec's own vector, and every way a delivery is refused."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from wf_core.webhook_signature import (
    BadSecretError,
    MissingHeadersError,
    SignatureError,
    TimestampError,
    secret_key,
    sign,
    verify,
)

# The example of the Standard Webhooks specification and its reference libraries.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = '{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

NOW = 1_790_000_000.0
SECRET = "whsec_" + base64.b64encode(b"a replicate signing key, 32 byte").decode()
BODY = b'{"id": "p1", "status": "succeeded", "output": ["https://x/y.png"]}'


def independent_signature(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """Written from the spec's wording, apart from the module under test."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    content = webhook_id.encode() + b"." + str(timestamp).encode() + b"." + body
    return "v1," + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()


def _headers(signature: str, webhook_id: str = "msg_1", timestamp: int = int(NOW)) -> dict:
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature,
    }


def test_the_spec_vector_signs_and_verifies() -> None:
    assert sign(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE
    headers = _headers(SPEC_SIGNATURE, SPEC_ID, SPEC_TIMESTAMP)
    delivery = verify(SPEC_SECRET, headers, SPEC_BODY.encode(), now=SPEC_TIMESTAMP + 10)
    assert (delivery.webhook_id, delivery.timestamp) == (SPEC_ID, SPEC_TIMESTAMP)


def test_the_independent_signer_agrees_with_the_spec() -> None:
    ours = independent_signature(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY.encode())
    assert ours == SPEC_SIGNATURE


def test_a_valid_delivery_is_accepted_with_or_without_the_prefix() -> None:
    headers = _headers(independent_signature(SECRET, "msg_1", int(NOW), BODY))
    assert verify(SECRET, headers, BODY, now=NOW).webhook_id == "msg_1"
    assert verify(SECRET.removeprefix("whsec_"), headers, BODY, now=NOW).timestamp == int(NOW)


def test_header_names_are_case_insensitive_in_a_plain_dict() -> None:
    headers = {k.title(): v for k, v in _headers(sign(SECRET, "msg_1", int(NOW), BODY)).items()}
    assert verify(SECRET, headers, BODY, now=NOW).webhook_id == "msg_1"


def test_a_wrong_secret_is_refused() -> None:
    other = "whsec_" + base64.b64encode(b"somebody else's key").decode()
    headers = _headers(independent_signature(other, "msg_1", int(NOW), BODY))
    with pytest.raises(SignatureError) as refused:
        verify(SECRET, headers, BODY, now=NOW)
    assert refused.value.code == "invalid_signature"


@pytest.mark.parametrize(
    "change",
    [
        lambda h, b: (h, b.replace(b"succeeded", b"failed")),
        lambda h, b: (h, b + b" "),
        lambda h, b: ({**h, "webhook-id": "msg_2"}, b),
        lambda h, b: ({**h, "webhook-timestamp": str(int(NOW) - 1)}, b),
    ],
    ids=["body", "trailing-space", "id", "timestamp"],
)
def test_anything_signed_that_changes_is_refused(change) -> None:
    headers, body = change(_headers(independent_signature(SECRET, "msg_1", int(NOW), BODY)), BODY)
    with pytest.raises(SignatureError):
        verify(SECRET, headers, body, now=NOW)


@pytest.mark.parametrize("age", [301, 10_000, -301])
def test_a_timestamp_outside_the_tolerance_is_refused(age: int) -> None:
    stamp = int(NOW) - age
    headers = _headers(independent_signature(SECRET, "msg_1", stamp, BODY), timestamp=stamp)
    with pytest.raises(TimestampError):
        verify(SECRET, headers, BODY, now=NOW)


@pytest.mark.parametrize("age", [300, 0, -300])
def test_the_tolerance_edges_are_accepted(age: int) -> None:
    stamp = int(NOW) - age
    headers = _headers(independent_signature(SECRET, "msg_1", stamp, BODY), timestamp=stamp)
    assert verify(SECRET, headers, BODY, now=NOW).timestamp == stamp


def test_a_custom_tolerance() -> None:
    stamp = int(NOW) - 20
    headers = _headers(independent_signature(SECRET, "msg_1", stamp, BODY), timestamp=stamp)
    with pytest.raises(TimestampError):
        verify(SECRET, headers, BODY, now=NOW, tolerance=10)


@pytest.mark.parametrize("stamp", ["soon", "1.5e9", "-5", "", "١٢٣"])
def test_a_timestamp_that_is_not_whole_seconds_is_refused(stamp: str) -> None:
    headers = {**_headers(sign(SECRET, "msg_1", int(NOW), BODY)), "webhook-timestamp": stamp}
    with pytest.raises(SignatureError):
        verify(SECRET, headers, BODY, now=NOW)


def test_any_one_of_several_signatures_is_enough() -> None:
    valid = independent_signature(SECRET, "msg_1", int(NOW), BODY)
    forged = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="
    other_scheme = "v1a," + valid.partition(",")[2]
    headers = _headers(" ".join([forged, other_scheme, valid, forged]))
    assert verify(SECRET, headers, BODY, now=NOW).webhook_id == "msg_1"


def test_a_right_digest_under_another_scheme_is_refused() -> None:
    digest = independent_signature(SECRET, "msg_1", int(NOW), BODY).partition(",")[2]
    with pytest.raises(SignatureError):
        verify(SECRET, _headers(f"v2,{digest} {digest}"), BODY, now=NOW)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_a_missing_header_is_refused(missing: str) -> None:
    headers = _headers(independent_signature(SECRET, "msg_1", int(NOW), BODY))
    del headers[missing]
    with pytest.raises(MissingHeadersError) as refused:
        verify(SECRET, headers, BODY, now=NOW)
    assert refused.value.code == "missing_signature"


def test_an_empty_header_is_missing() -> None:
    headers = {**_headers(sign(SECRET, "msg_1", int(NOW), BODY)), "webhook-signature": " "}
    with pytest.raises(MissingHeadersError):
        verify(SECRET, headers, BODY, now=NOW)


@pytest.mark.parametrize("secret", ["", "whsec_", "whsec_!!!"])
def test_an_unusable_secret_is_a_configuration_error(secret: str) -> None:
    with pytest.raises(BadSecretError):
        secret_key(secret)
