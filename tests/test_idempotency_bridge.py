"""Idempotency-Key on POST /workflows/execute: one job per key, refusals store nothing."""

from __future__ import annotations

import threading

from tests.bridge_fakes import LaunchingGateway, bearer, bridge_app, execute
from tests.conftest import SAMPLE_IMAGE


def test_the_same_key_twice_starts_one_job(tmp_path) -> None:
    gateway = LaunchingGateway()
    client = bridge_app(tmp_path, gateway).test_client()
    headers = {**bearer(), "Idempotency-Key": "order-1"}
    first = execute(client, headers)
    again = execute(client, headers)
    assert first.status_code == again.status_code == 202
    assert again.json == first.json
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(gateway.launches) == 1
    # Another key, or another user with the same key, is another job.
    assert execute(client, {**bearer(), "Idempotency-Key": "order-2"}).json != first.json
    assert execute(client, {**bearer("user-b"), "Idempotency-Key": "order-1"}).status_code == 202
    assert len(gateway.launches) == 3


def test_concurrent_duplicates_start_one_job(tmp_path) -> None:
    gateway = LaunchingGateway()
    app = bridge_app(tmp_path, gateway)
    headers = {**bearer(), "Idempotency-Key": "burst"}
    start = threading.Barrier(4)
    answers: list = []

    def post() -> None:
        client = app.test_client()
        start.wait()
        answers.append(execute(client, headers))

    threads = [threading.Thread(target=post) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [a.status_code for a in answers] == [202] * 4
    assert len({a.json["job_id"] for a in answers}) == 1
    assert len(gateway.launches) == 1


def test_a_refused_request_stores_nothing(tmp_path) -> None:
    gateway = LaunchingGateway(fail_launch=True)
    client = bridge_app(tmp_path, gateway).test_client()
    headers = {**bearer(), "Idempotency-Key": "retry-me"}
    assert execute(client, headers).status_code == 503
    bad = execute(client, headers, workflow_id="no-such-workflow")
    assert bad.status_code == 404  # not a replay of the 503: nothing was stored
    gateway.fail_launch = False
    ok = execute(client, headers)
    assert ok.status_code == 202 and "Idempotent-Replayed" not in ok.headers
    assert len(gateway.launches) == 1


def test_a_malformed_key_is_refused(tmp_path) -> None:
    client = bridge_app(tmp_path, LaunchingGateway()).test_client()
    for key in ("x" * 256, "caf\u00e9"):
        answer = execute(client, {**bearer(), "Idempotency-Key": key})
        assert answer.status_code == 400
        assert answer.json["error"]["code"] == "invalid_idempotency_key"


def test_a_key_reused_with_another_request_is_a_422(tmp_path) -> None:
    gateway = LaunchingGateway()
    client = bridge_app(tmp_path, gateway).test_client()
    headers = {**bearer(), "Idempotency-Key": "order-7"}
    first = execute(client, headers)
    assert first.status_code == 202
    other_workflow = execute(client, headers, workflow_id="style-transfer-video")
    other_prompt = execute(client, headers, options='{"prompts": {"image_edit": "other"}}')
    for answer in (other_workflow, other_prompt):
        assert answer.status_code == 422, answer.json
        assert answer.json["error"]["code"] == "idempotency_key_reused"
    assert execute(client, headers).json == first.json  # the same request still replays
    assert len(gateway.launches) == 1


def test_a_part_without_a_name_is_digested_not_a_500(tmp_path) -> None:
    """A multipart part with no name (the parser gives None) beside named ones: found by the
    fuzzer as a 500 while the request's fields were sorted for the digest."""
    gateway = LaunchingGateway()
    client = bridge_app(tmp_path, gateway).test_client()
    boundary = "b0undary"
    parts = [
        ('form-data; name="workflow_id"', b"img-edit-to-video"),
        ("form-data", b"a part with no name"),
        ('form-data; name="x"', b"2"),
        ('form-data; name="x"', b"1"),
        ('form-data; name="file"; filename="photo.jpg"', SAMPLE_IMAGE.read_bytes()),
    ]
    body = (
        b"".join(
            b"--%s\r\nContent-Disposition: %s\r\n\r\n%s\r\n" % (boundary.encode(), d.encode(), v)
            for d, v in parts
        )
        + b"--%s--\r\n" % boundary.encode()
    )
    headers = {
        **bearer(),
        "Idempotency-Key": "nameless",
        "Content-Type": f"multipart/form-data; boundary={boundary}",
    }
    first = client.post("/workflows/execute", data=body, headers=headers)
    again = client.post("/workflows/execute", data=body, headers=headers)
    assert first.status_code == 202, first.json
    assert again.json == first.json and again.headers["Idempotent-Replayed"] == "true"
    assert len(gateway.launches) == 1
