"""The fake Replicate itself: time-based predictions, signed webhooks and their faults, the
list endpoint, and creates that are billed while the client hears an error."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tests.fakes.clock import FakeClock
from tests.fakes.replicate_server import FakeReplicate, Fault, Script, closed_port

TOKEN = "r8_fake_token"
MODEL = "acme/painter"
SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


@dataclass
class Received:
    """One webhook POST as the receiver saw it."""

    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def prediction(self) -> dict[str, Any]:
        return json.loads(self.body)


class Receiver:
    """A webhook endpoint on loopback: records every POST, answers `answers` then 204s."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.answers: deque[int] = deque()
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver.lock:
                    receiver.received.append(Received(self.path, headers, body))
                    status = receiver.answers.popleft() if receiver.answers else 204
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/replicate"

    def got(self, count: int) -> list[Received]:
        """Wait (bounded) until at least `count` webhooks arrived; all of them."""
        wait_for(lambda: len(self.received) >= count)
        with self.lock:
            return list(self.received)


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll `condition` until it holds; fail the test if it never does."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def signed_by(secret: str, webhook: Received) -> bool:
    """Standard Webhooks verification, written out here independently of the fake."""
    key = base64.b64decode(secret.split("_", 1)[1])
    h = webhook.headers
    content = f"{h['webhook-id']}.{h['webhook-timestamp']}.".encode() + webhook.body
    expected = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    sent = [s.split(",", 1) for s in h["webhook-signature"].split()]
    return any(v == "v1" and hmac.compare_digest(sig, expected) for v, sig in sent)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    thread = threading.Thread(target=r.server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()
    thread.join(5)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake(clock: FakeClock) -> Iterator[FakeReplicate]:
    with FakeReplicate(TOKEN, {MODEL, "acme/other"}, set(), SECRET, clock=clock) as server:
        server.webhook_retry_backoff = 0.01
        yield server


@pytest.fixture
def api(fake: FakeReplicate) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=fake.base_url, headers=headers, timeout=5) as client:
        yield client


def create(api: httpx.Client, hook: str | None, model: str = MODEL, **more: Any) -> dict:
    """Create as the engine will: webhook for completed only, no Prefer: wait."""
    body: dict[str, Any] = {"input": {"prompt": "a hat"}, **more}
    if hook:
        body = {"webhook": hook, "webhook_events_filter": ["completed"], **body}
    answer = api.post(f"/models/{model}/predictions", json=body)
    assert answer.status_code == 201, answer.text
    return answer.json()


def test_time_based_prediction_ends_by_the_clock_and_sends_one_signed_webhook(
    fake, api, receiver, clock
) -> None:
    fake.script = Script(seconds=10)
    created = create(api, f"{receiver.url}?intent=i1")
    assert created["status"] == "starting" and created["webhook"] == f"{receiver.url}?intent=i1"
    clock.advance(4)
    read = api.get(f"/predictions/{created['id']}").json()
    assert read["status"] == "processing" and read["logs"].startswith("40%|####|")
    assert read["started_at"] and not read["completed_at"]
    clock.advance(6)  # nobody reads it: the fake's own thread ends it and sends the webhook
    [webhook] = receiver.got(1)
    assert webhook.path == "/hooks/replicate?intent=i1" and signed_by(SECRET, webhook)
    assert webhook.headers["webhook-id"].startswith("msg_")
    assert abs(int(webhook.headers["webhook-timestamp"]) - time.time()) < 300
    sent = webhook.prediction
    assert sent["id"] == created["id"] and sent["status"] == "succeeded" and sent["output"]
    assert sent["completed_at"] and sent["logs"].startswith("100%")
    # The sender records a delivery once the receiver has answered it.
    wait_for(lambda: bool(fake.webhook_deliveries))
    assert fake.webhooks_pending == 0
    [delivery] = fake.webhook_deliveries
    assert (delivery.webhook_id, delivery.status, delivery.code) == (
        webhook.headers["webhook-id"],
        "succeeded",
        204,
    )
    assert fake.gets and len(fake.gets) == 1


def test_a_forged_secret_does_not_verify(fake, api, receiver) -> None:
    fake.script = Script(seconds=0)
    create(api, receiver.url)
    [webhook] = receiver.got(1)
    other = "whsec_" + base64.b64encode(b"x" * 32).decode()
    assert signed_by(fake.webhook_secret, webhook) and not signed_by(other, webhook)
    assert api.get("/webhooks/default/secret").json() == {"key": SECRET}


def test_generated_secret_has_the_replicate_shape() -> None:
    with FakeReplicate(TOKEN, {MODEL}, set()) as fake:
        prefix, key = fake.webhook_secret.split("_", 1)
    assert prefix == "whsec" and len(base64.b64decode(key)) == 32


@pytest.mark.parametrize("how", ["read", "cancel"])
def test_reads_and_cancels_that_end_a_prediction_send_its_webhook(how, fake, api, receiver):
    fake.script = Script() if how == "read" else Script(seconds=1, outcome="never")
    p = create(api, receiver.url)
    if how == "read":
        api.get(f"/predictions/{p['id']}")
        assert api.get(f"/predictions/{p['id']}").json()["status"] == "succeeded"
    else:
        assert api.post(f"/predictions/{p['id']}/cancel").json()["status"] == "canceled"
    [webhook] = receiver.got(1)
    assert webhook.prediction["status"] == ("succeeded" if how == "read" else "canceled")


def test_no_webhook_without_completed_in_the_filter(fake, api, receiver) -> None:
    fake.script = Script(seconds=0)
    p = create(api, receiver.url, webhook_events_filter=["start"])
    assert api.get(f"/predictions/{p['id']}").json()["status"] == "succeeded"
    # Webhooks are queued the moment a prediction ends: none queued means none will come.
    assert fake.webhooks_pending == 0 and fake.webhook_deliveries == []


def test_bad_webhook_fields_are_refused(fake, api) -> None:
    body = {"input": {}, "webhook": "ftp://x", "webhook_events_filter": ["done"]}
    answer = api.post(f"/models/{MODEL}/predictions", json=body)
    assert answer.status_code == 422
    fields = [f["field"] for f in answer.json()["invalid_fields"]]
    assert fields == ["webhook", "webhook_events_filter"] and fake.created_count() == 0


def test_dropped_webhook_is_recorded_but_never_sent(fake, api, receiver) -> None:
    fake.script, fake.drop_webhooks = Script(seconds=0), 1
    first, second = create(api, receiver.url), create(api, receiver.url)
    [webhook] = receiver.got(1)
    assert webhook.prediction["id"] == second["id"] and fake.drop_webhooks == 0
    dropped = [d for d in fake.webhook_deliveries if d.error == "dropped"]
    assert [d.prediction_id for d in dropped] == [first["id"]]
    assert api.get(f"/predictions/{first['id']}").json()["status"] == "succeeded"


def test_drop_all_webhooks(fake, api, receiver) -> None:
    fake.script, fake.drop_all_webhooks = Script(seconds=0), True
    create(api, receiver.url), create(api, receiver.url)
    assert fake.webhooks_pending == 0 and receiver.received == []
    assert [d.error for d in fake.webhook_deliveries] == ["dropped", "dropped"]


def test_duplicates_reuse_the_id_twice_then_come_with_a_new_one(fake, api, receiver) -> None:
    fake.script, fake.duplicate_webhooks = Script(seconds=0), True
    create(api, receiver.url)
    webhooks = receiver.got(3)
    a, b, c = (w.headers["webhook-id"] for w in webhooks)
    assert a == b != c and all(signed_by(SECRET, w) for w in webhooks)
    assert {w.prediction["status"] for w in webhooks} == {"succeeded"}


def test_reordered_stale_processing_view_comes_after_the_completed_one(fake, api, receiver):
    fake.script, fake.reorder_webhooks = Script(seconds=0), True
    create(api, receiver.url)
    completed, stale = receiver.got(2)
    assert completed.prediction["status"] == "succeeded" and completed.prediction["output"]
    assert stale.prediction["status"] == "processing" and stale.prediction["output"] is None
    assert completed.headers["webhook-id"] != stale.headers["webhook-id"]
    assert signed_by(SECRET, stale)


def test_held_webhooks_are_sent_in_order_on_release(fake, api, receiver) -> None:
    fake.script = Script(seconds=0)
    fake.hold_webhooks()
    first, second = create(api, receiver.url), create(api, receiver.url)
    assert fake.webhooks_pending == 2 and receiver.received == []
    fake.release_webhooks()
    assert [w.prediction["id"] for w in receiver.got(2)] == [first["id"], second["id"]]


def test_delayed_webhook_is_overtaken_by_a_prompt_one(fake, api, receiver) -> None:
    fake.script, fake.webhook_delay = Script(seconds=0), 1.0
    late = create(api, receiver.url)
    fake.webhook_delay = 0
    prompt = create(api, receiver.url)
    assert [w.prediction["id"] for w in receiver.got(2)] == [prompt["id"], late["id"]]


def test_refused_webhook_is_retried_with_the_same_id(fake, api, receiver) -> None:
    fake.script = Script(seconds=0)
    receiver.answers.extend([500, 503])
    create(api, receiver.url)
    webhooks = receiver.got(3)
    assert len({w.headers["webhook-id"] for w in webhooks}) == 1
    wait_for(lambda: len(fake.webhook_deliveries) == 3)
    assert [(d.attempt, d.code) for d in fake.webhook_deliveries] == [(1, 500), (2, 503), (3, 204)]


def test_unreachable_receiver_gets_retries_then_is_given_up(fake, api) -> None:
    fake.script, fake.webhook_retries = Script(seconds=0), 2
    create(api, f"http://127.0.0.1:{closed_port()}/hooks/replicate")
    wait_for(lambda: len(fake.webhook_deliveries) == 3 and fake.webhooks_pending == 0)
    deliveries = fake.webhook_deliveries
    assert [d.attempt for d in deliveries] == [1, 2, 3]
    assert len({d.webhook_id for d in deliveries}) == 1
    assert all(d.code is None and d.error for d in deliveries)


def test_list_pages_newest_first(fake, api) -> None:
    fake.list_page_size = 2
    made = [create(api, None)["id"] for _ in range(5)]
    listed, url, pages = [], "/predictions", []
    while url:
        page = api.get(url).json()
        pages.append(page)
        listed += [p["id"] for p in page["results"]]
        url = page["next"]
    assert listed == made[::-1] and [len(p["results"]) for p in pages] == [2, 2, 1]
    assert pages[0]["previous"] is None and pages[1]["next"].startswith(fake.base_url)
    back = api.get(pages[1]["previous"]).json()
    assert [p["id"] for p in back["results"]] == made[::-1][:2]
    assert set(pages[0]["results"][0]) >= {"input", "model", "created_at", "status", "urls"}
    assert len(fake.lists) == 4


def test_list_filters_on_created_at(fake, api) -> None:
    old, middle, new = (create(api, None) for _ in range(3))
    after = datetime.fromisoformat(old["created_at"]).isoformat()  # the +00:00 spelling
    before = new["created_at"]  # the Z spelling
    page = api.get("/predictions", params={"created_after": after, "created_before": before})
    assert [p["id"] for p in page.json()["results"]] == [middle["id"]]
    assert api.get("/predictions", params={"created_after": "yesterday"}).status_code == 400


def test_list_needs_the_token(fake) -> None:
    assert httpx.get(f"{fake.base_url}/predictions").status_code == 401


@pytest.mark.parametrize(
    "fault, error",
    [
        (Fault(504, {"title": "Gateway Timeout"}, accept=True), None),
        (Fault(0, accept=True, drop=True), httpx.RemoteProtocolError),
    ],
)
def test_accepted_create_fault_bills_a_prediction_the_client_never_hears_of(
    fake, api, fault, error
) -> None:
    fake.fail_creates(1, fault)
    body = {"input": {"prompt": "lost"}}
    if error is None:
        assert api.post(f"/models/{MODEL}/predictions", json=body).status_code == 504
    else:
        with pytest.raises(error):
            api.post(f"/models/{MODEL}/predictions", json=body)
    assert fake.created_count() == 1 and fake.created_count(MODEL) == 1
    [found] = api.get("/predictions").json()["results"]
    assert found["input"] == {"prompt": "lost"}


def test_hung_create_is_made_before_the_caller_gives_up(fake, api) -> None:
    fake.hang_creates(0.3)
    with pytest.raises(httpx.ReadTimeout):
        api.post(f"/models/{MODEL}/predictions", json={"input": {}}, timeout=0.05)
    wait_for(lambda: fake.created_count(MODEL) == 1)  # made before the answer is delayed
    assert fake.created_count("acme/other") == 0
    assert create(api, None)["status"] == "starting" and fake.created_count() == 2
