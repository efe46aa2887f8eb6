"""Job webhooks: signed per Standard Webhooks, verified by a receiver, retried after a 500,
every attempt recorded; and callback_url checked at execute."""

from __future__ import annotations

import base64

import dagster as dg
import pytest

from resources.state_database import StateDatabase
from sensors.callbacks import evaluate_callbacks
from tests.bridge_fakes import LaunchingGateway, bearer, bridge_app, execute
from tests.callback_receiver import CallbackReceiver
from tests.conftest import run_job
from tests.fakes.clock import FakeClock
from wf_core import outbound
from wf_core import tags as t
from wf_core.job_ids import new_job_id
from wf_store.callbacks import DELIVERED, PENDING, WATCHING, CallbackStore, backoff

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
USER = "user-a"


@pytest.fixture
def secret(monkeypatch) -> str:
    monkeypatch.setenv("CALLBACK_SIGNING_SECRET", SECRET)
    # The receivers listen on loopback: allowed by name, as an operator would allow them.
    monkeypatch.setenv("CALLBACK_ALLOWED_HOSTS", "127.0.0.1")
    monkeypatch.setenv("ALLOW_HTTP_CALLBACKS", "on")
    return SECRET


# What the stub resolver answers; no test here asks a real resolver or opens a
# connection to anything but its own loopback receiver.
STUB_DNS = {
    "client.example": ["93.184.216.34"],
    "metadata.example": ["169.254.169.254"],
    "localhost": ["127.0.0.1", "::1"],
}


@pytest.fixture
def stub_dns(monkeypatch) -> list[str]:
    asked: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        if host not in STUB_DNS:
            raise OSError("no such name")
        return STUB_DNS[host]

    monkeypatch.setattr(outbound, "system_resolve", resolve)
    return asked


def tick(instance, specs, predictions, clock) -> None:
    with dg.build_sensor_context(instance=instance) as context:
        evaluate_callbacks(context, specs, predictions, clock)


def test_a_completed_job_is_delivered_signed_and_retried_after_a_500(specs, bench, secret) -> None:
    spec = specs["img-edit-to-video"]
    predictions = StateDatabase(url=bench.state_db_url)
    store = CallbackStore(predictions.store().engine)
    clock = FakeClock.at_wall_time()
    job = new_job_id()
    with CallbackReceiver(secret, [500, 204]) as receiver, dg.instance_for_test() as instance:
        store.watch(job, USER, spec.id, receiver.url)
        tick(instance, specs, predictions, clock)  # no run yet: still watching
        assert store.get(job).state == WATCHING and receiver.deliveries == []
        run_job(spec, instance, bench.resources(), job, tags=t.job_tags(spec.id, job, USER, "t"))
        clock.advance(5)
        tick(instance, specs, predictions, clock)  # final: sent, answered 500
        assert store.get(job).state == PENDING
        tick(instance, specs, predictions, clock)  # not due yet: nothing sent
        assert len(receiver.deliveries) == 1
        clock.advance(backoff(1))
        tick(instance, specs, predictions, clock)
        assert store.get(job).state == DELIVERED
        clock.advance(3600)
        tick(instance, specs, predictions, clock)
    first, second = receiver.deliveries
    assert [first["answered"], second["answered"]] == [500, 204]
    assert first["verified"] and second["verified"]
    assert first["webhook_id"] == second["webhook_id"]  # one message, retried
    body = second["body"]
    assert body["type"] == "job.completed"
    assert body["job"]["job_id"] == job and body["job"]["status"] == "completed"
    assert body["job"]["result"]["video_url"].endswith("video_generation.mp4")
    attempts = store.attempts(job)
    assert [(a.attempt, a.status_code) for a in attempts] == [(1, 500), (2, 204)]


def test_a_permanent_failure_is_sent_as_job_failed(specs, bench, secret) -> None:
    spec = specs["img-edit-to-video"]
    predictions = StateDatabase(url=bench.state_db_url)
    store = CallbackStore(predictions.store().engine)
    bench.set_faults({"image_to_video": {"error_type": "content_rejected"}})
    job = new_job_id()
    with CallbackReceiver(secret, [200]) as receiver, dg.instance_for_test() as instance:
        store.watch(job, USER, spec.id, receiver.url)
        run_job(spec, instance, bench.resources(), job, tags=t.job_tags(spec.id, job, USER, "t"))
        tick(instance, specs, predictions, FakeClock.at_wall_time())
    (delivery,) = receiver.deliveries
    assert delivery["verified"] and delivery["body"]["type"] == "job.failed"
    assert delivery["body"]["job"]["error_info"]["error_type"] == "content_rejected"


def test_a_wrong_secret_fails_the_receivers_check(specs, bench, secret, monkeypatch) -> None:
    monkeypatch.setenv("CALLBACK_SIGNING_SECRET", "whsec_" + base64.b64encode(b"x" * 32).decode())
    spec = specs["img-edit-to-video"]
    predictions = StateDatabase(url=bench.state_db_url)
    job = new_job_id()
    with CallbackReceiver(SECRET, [204]) as receiver, dg.instance_for_test() as instance:
        CallbackStore(predictions.store().engine).watch(job, USER, spec.id, receiver.url)
        run_job(spec, instance, bench.resources(), job, tags=t.job_tags(spec.id, job, USER, "t"))
        tick(instance, specs, predictions, FakeClock.at_wall_time())
    assert [d["verified"] for d in receiver.deliveries] == [False]


@pytest.mark.parametrize(
    "url,status",
    [
        ("https://client.example/hooks", 202),
        ("http://127.0.0.1:9/hooks", 202),
        ("http://client.example/hooks", 422),  # plain http to a host not allowed
        ("https://127.0.0.2/hooks", 422),  # loopback, but not the allowed host
        ("ftp://client.example/hooks", 422),
        ("https://user:pw@client.example/hooks", 422),
        ("not a url", 422),
    ],
)
def test_callback_url_is_checked_at_execute(tmp_path, stub_dns, url, status) -> None:
    gateway = LaunchingGateway()
    config = {
        "CALLBACK_SIGNING_SECRET": SECRET,
        "ALLOW_HTTP_CALLBACKS": "on",
        "CALLBACK_ALLOWED_HOSTS": "127.0.0.1",
    }
    app = bridge_app(tmp_path, gateway, **config)
    answer = execute(app.test_client(), bearer(), callback_url=url)
    assert answer.status_code == status
    assert len(gateway.launches) == (1 if status == 202 else 0)
    if status == 202:
        watched = CallbackStore(app.config["PREDICTION_STORE"].engine).get(answer.json["job_id"])
        assert (watched.url, watched.state, watched.user_id) == (url, WATCHING, "user-a")


def test_callback_url_needs_a_signing_secret(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("CALLBACK_SIGNING_SECRET", raising=False)
    client = bridge_app(tmp_path, LaunchingGateway()).test_client()
    answer = execute(client, bearer(), callback_url="https://client.example/hooks")
    assert answer.status_code == 422 and answer.json["error"]["field"] == "callback_url"


INTERNAL_HOSTS = [
    "127.0.0.1",
    "127.1",
    "2130706433",
    "0x7f000001",
    "[::ffff:127.0.0.1]",
    "[::1]",
    "0.0.0.0",
    "169.254.169.254",
    "10.0.0.1",
    "172.16.0.1",
    "192.168.0.1",
    "[fe80::1]",
    "224.0.0.1",
    "localhost",
    "metadata.example",
]


@pytest.mark.parametrize("host", INTERNAL_HOSTS)
def test_an_internal_callback_is_refused_at_submit(tmp_path, stub_dns, host) -> None:
    gateway = LaunchingGateway()
    app = bridge_app(tmp_path, gateway, CALLBACK_SIGNING_SECRET=SECRET)
    answer = execute(app.test_client(), bearer(), callback_url=f"https://{host}/hooks")
    assert answer.status_code == 422, answer.json
    assert answer.json["error"]["field"] == "callback_url"
    assert "public address" in answer.json["error"]["message"]
    assert gateway.launches == []
    assert set(stub_dns) <= {"localhost", "metadata.example"}  # numbers need no lookup


def test_a_name_that_now_resolves_inside_is_refused_at_delivery(
    specs, bench, secret, stub_dns, monkeypatch
) -> None:
    spec = specs["img-edit-to-video"]
    predictions = StateDatabase(url=bench.state_db_url)
    store = CallbackStore(predictions.store().engine)
    job = new_job_id()
    # Accepted at submit while the name pointed outside; it points at metadata now.
    store.watch(job, USER, spec.id, "https://metadata.example/hooks")
    connects: list = []

    def no_connection(sock, address):
        connects.append(address)
        raise AssertionError(f"a connection to {address} was attempted")

    with dg.instance_for_test() as instance:
        run_job(spec, instance, bench.resources(), job, tags=t.job_tags(spec.id, job, USER, "t"))
        monkeypatch.setattr("socket.socket.connect", no_connection)
        tick(instance, specs, predictions, FakeClock.at_wall_time())
    assert connects == []
    (attempt,) = store.attempts(job)
    assert attempt.status_code is None and attempt.error.startswith("refused: ")
    assert "metadata.example" in stub_dns
