"""POST /hooks/replicate against a real prediction store on SQLite: signed deliveries are
recorded once, anything else is refused and changes nothing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid

import pytest
from sqlalchemy import func, select

from bridge_api import create_app
from bridge_api.routes.hooks import CLOCK
from tests.conftest import migrated
from tests.fakes.clock import FakeClock
from wf_core.webhook_signature import BadSecretError
from wf_store import predictions as p

NOW = 1_790_000_000.0
SECRET = "whsec_" + base64.b64encode(b"replicate webhook key for tests!").decode()


def _signature(webhook_id: str, timestamp: int, body: bytes, secret: str = SECRET) -> str:
    # Independent of wf_core.webhook_signature: the Standard Webhooks recipe, spelled out.
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = b"%s.%d.%s" % (webhook_id.encode(), timestamp, body)
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


@pytest.fixture
def store(tmp_path):
    store = p.PredictionStore(migrated(f"sqlite:///{tmp_path / 'state.db'}"), clock=FakeClock(NOW))
    yield store
    store.close()


def _app(tmp_path, store, secret: str | None = SECRET, **config):
    app = create_app(
        {
            "AUTH_MODE": "supabase",  # hooks take no user token, whatever the auth mode
            "SUPABASE_JWT_SECRET": "x" * 40,
            "MEDIA_DIR": str(tmp_path / "media"),
            "UPLOAD_DIR": str(tmp_path / "uploads"),
            "REPLICATE_WEBHOOK_SECRET": secret,
            "PREDICTION_STORE": store,
            **config,
        }
    )
    app.extensions[CLOCK] = FakeClock(NOW)
    return app


@pytest.fixture
def app(tmp_path, store):
    return _app(tmp_path, store)


def _intent(store: p.PredictionStore, job_id: str | None = None) -> p.Prediction:
    return store.intend(
        job_id=job_id or str(uuid.uuid4()),
        step="image_edit",
        attempt=1,
        workflow_id="img-edit-to-video",
        provider="replicate",
        model="nano-banana",
        provider_model="google/nano-banana",
        input_digest="d" * 64,
        provider_input={"prompt": "x"},
        run_id="run-1",
    )


def _parked(store: p.PredictionStore, prediction_id: str = "pred-1") -> p.Prediction:
    return store.created(_intent(store).id, prediction_id, "starting", next_poll_at=NOW + 60)


def _completed(prediction_id: str = "pred-1") -> dict:
    return {
        "id": prediction_id,
        "status": "succeeded",
        "output": ["https://replicate.delivery/x/out.png"],
        "error": None,
    }


def _post(app, body, *, webhook_id="msg_1", timestamp=int(NOW), signature=None, query=""):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature or _signature(webhook_id, timestamp, raw),
    }
    return app.test_client().post(
        f"/hooks/replicate{query}", data=raw, headers=headers, content_type="application/json"
    )


def _deliveries(store: p.PredictionStore) -> int:
    with store.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(p.webhook_events)).scalar_one()


def test_a_signed_completion_completes_the_parked_row(app, store) -> None:
    row = _parked(store)
    response = _post(app, _completed(), query=f"?intent={row.id}")
    assert response.status_code == 204 and response.data == b""
    done = store.get(row.id)
    assert done.state == p.COMPLETED and done.provider_status == "succeeded"
    assert done.output == ["https://replicate.delivery/x/out.png"]
    assert done.completed_by == "webhook"


def test_a_repeated_webhook_id_is_a_no_op_and_still_204(app, store) -> None:
    row = _parked(store)
    assert _post(app, _completed()).status_code == 204
    first = store.get(row.id)
    # The same delivery id again, now saying something else: nothing changes.
    again = _post(app, {**_completed(), "status": "failed", "error": "late"})
    assert again.status_code == 204
    assert store.get(row.id) == first
    assert _deliveries(store) == 1


def test_a_running_update_moves_progress(app, store) -> None:
    row = _parked(store)
    update = {"id": "pred-1", "status": "processing", "progress": 40}
    assert _post(app, update).status_code == 204
    assert store.get(row.id).public() == {
        "name": "replicate",
        "prediction_id": "pred-1",
        "status": "processing",
        "progress": 40,
    }


def test_a_webhook_before_the_create_answer_is_matched_by_intent(app, store) -> None:
    intent = _intent(store)
    response = _post(app, _completed("pred-early"), query=f"?intent={intent.id}")
    assert response.status_code == 204
    row = store.get(intent.id)
    assert row.state == p.COMPLETED and row.prediction_id == "pred-early"
    # The create's answer arriving afterwards does not move it back.
    store.created(intent.id, "pred-early", "starting", next_poll_at=NOW + 60)
    assert store.get(intent.id).state == p.COMPLETED


def test_a_malformed_intent_is_ignored_and_the_prediction_id_still_matches(app, store) -> None:
    row = _parked(store)
    assert _post(app, _completed(), query="?intent=../../x").status_code == 204
    assert store.get(row.id).state == p.COMPLETED


def _refused(response, code: str) -> None:
    assert response.status_code == 401, response.data
    assert response.is_json and response.json["error"]["code"] == code
    assert "WWW-Authenticate" not in response.headers  # not a bearer-token route


def test_a_forged_signature_is_refused_and_changes_nothing(app, store) -> None:
    row = _parked(store)
    raw = json.dumps(_completed()).encode()
    other = "whsec_" + base64.b64encode(b"not replicate's key").decode()
    forged = _signature("msg_1", int(NOW), raw, secret=other)
    _refused(_post(app, raw, signature=forged), "invalid_signature")
    assert store.get(row.id) == row and _deliveries(store) == 0


def test_a_tampered_body_is_refused(app, store) -> None:
    row = _parked(store)
    signed = json.dumps({**_completed(), "status": "failed"}).encode()
    tampered = json.dumps(_completed()).encode()
    _refused(
        _post(app, tampered, signature=_signature("msg_1", int(NOW), signed)), "invalid_signature"
    )
    assert store.get(row.id) == row


def test_no_signature_headers_are_refused(app, store) -> None:
    row = _parked(store)
    response = app.test_client().post("/hooks/replicate", json=_completed())
    _refused(response, "missing_signature")
    assert store.get(row.id) == row and _deliveries(store) == 0


def test_an_old_timestamp_is_refused(app, store) -> None:
    row = _parked(store)
    _refused(_post(app, _completed(), timestamp=int(NOW) - 301), "invalid_timestamp")
    assert store.get(row.id) == row and _deliveries(store) == 0


def test_the_clock_decides_what_is_old(app, store) -> None:
    row = _parked(store)
    stamp = int(NOW)
    app.extensions[CLOCK].now = NOW + 299
    assert _post(app, _completed(), timestamp=stamp).status_code == 204
    assert store.get(row.id).state == p.COMPLETED


def test_no_secret_configured_refuses_everything(tmp_path, store) -> None:
    row = _parked(store)
    app = _app(tmp_path, store, secret=None)
    _refused(_post(app, _completed()), "webhooks_disabled")
    assert store.get(row.id) == row and _deliveries(store) == 0


def test_a_secret_that_is_not_base64_stops_the_start(tmp_path, store) -> None:
    with pytest.raises(BadSecretError):
        _app(tmp_path, store, secret="whsec_")


@pytest.mark.parametrize(
    "raw,code",
    [
        (b"{not json", "invalid_json"),
        (b"[1, 2]", "invalid_body"),
        (b'{"id": "pred-1"}', "invalid_body"),
        (b'{"id": "", "status": "succeeded"}', "invalid_body"),
        (b'{"id": 7, "status": "succeeded"}', "invalid_body"),
        (b"[" * 100_000, "invalid_json"),
    ],
    ids=["not-json", "array", "no-status", "empty-id", "numeric-id", "deep"],
)
def test_a_signed_body_that_is_no_prediction_is_a_400(app, store, raw: bytes, code: str) -> None:
    row = _parked(store)
    response = _post(app, raw)
    assert response.status_code == 400 and response.json["error"]["code"] == code
    assert store.get(row.id) == row and _deliveries(store) == 0


def test_an_unsigned_malformed_body_is_a_401_not_a_400(app) -> None:
    """The signature is checked before the body is read as JSON."""
    response = app.test_client().post("/hooks/replicate", data=b"{not json")
    _refused(response, "missing_signature")


def test_an_unreachable_store_is_a_503_so_replicate_sends_again(tmp_path) -> None:
    broken = p.PredictionStore(f"sqlite:///{tmp_path}")  # a folder, not a database file
    response = _post(_app(tmp_path, broken), _completed())
    assert response.status_code == 503
    assert response.json["error"]["code"] == "store_unavailable"
    assert response.headers["Retry-After"] == "5"


def test_many_deliveries_in_a_row_are_all_taken(tmp_path, store) -> None:
    # No per-user (or per-address) limit: Replicate sends from a few addresses, in bursts.
    app = _app(tmp_path, store, RATELIMIT_EXECUTE="1 per minute")
    codes = {_post(app, _completed(), webhook_id=f"msg_{i}").status_code for i in range(30)}
    assert codes == {204}


def test_the_real_clock_is_the_default(tmp_path, store) -> None:
    app = _app(tmp_path, store)
    del app.extensions[CLOCK]
    now = int(time.time())
    raw = json.dumps(_completed()).encode()
    response = _post(app, raw, timestamp=now, signature=_signature("msg_1", now, raw))
    assert response.status_code == 204
