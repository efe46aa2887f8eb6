"""A dependency that is down is a retryable, classified condition whose messages name no
host, port or path: the provider limiter, a step's database, the bridge's rate limits
and state database, and /healthz. Outages are made with closed loopback ports."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa
import sqlalchemy.exc as sa_exc

from bridge_api import create_app
from resources.rate_limiter import ProviderRateLimiter
from tests.conftest import SAMPLE_IMAGE
from wf_assets.dependencies import as_dependency_outage
from wf_core import tags as t
from wf_core.errors import RetryableError, classify
from wf_core.job_state import RunView, failures_per_step
from wf_core.rate_limit import RateLimitTable, parse_rules


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_provider_limiter_fails_closed_and_retryable_when_its_redis_is_down() -> None:
    port = closed_port()
    client = redis.Redis.from_url(f"redis://127.0.0.1:{port}/0", socket_timeout=1)
    limiter = ProviderRateLimiter(client, RateLimitTable(parse_rules("replicate=600/60")))
    with pytest.raises(RetryableError) as caught:
        limiter.acquire("replicate", "kling/v1.6", "ticket-1", "user-a")
    error = caught.value
    assert error.error_type == "server_unavailable" and error.retry_after
    assert error.details["dependency"] is True
    assert "127.0.0.1" not in error.message and str(port) not in error.message
    limiter.release("replicate", "kling/v1.6", "ticket-1")  # never raises: the slot expires


def test_a_steps_database_outage_is_a_retryable_dependency_outage() -> None:
    port = closed_port()
    engine = sa.create_engine(f"postgresql+psycopg2://u@127.0.0.1:{port}/db")
    with pytest.raises(sa_exc.OperationalError) as caught:
        engine.connect()
    outage = as_dependency_outage(caught.value)
    assert outage is not None and outage.error_type == "server_unavailable"
    record = classify(outage, "image_edit", 1)
    assert record.retryable and str(port) not in record.message
    assert as_dependency_outage(KeyError("x")) is None


def test_an_internal_error_message_names_no_address_or_path() -> None:
    failure = ConnectionRefusedError(
        "Error 111 connecting to 10.2.3.4:6379; see /srv/app/secrets.yaml or http://db:5432/x"
    )
    message = classify(failure, "upload", 0).message
    for leak in ("10.2.3.4", "6379", "/srv/app", "http://"):
        assert leak not in message, message


def test_a_dependency_outage_does_not_count_against_max_attempts() -> None:
    outage = {t.FAILED_STEP: "image_edit", t.DEPENDENCY_OUTAGE: "true"}
    runs = [
        RunView(f"r{i}", "FAILURE", {**outage, t.ATTEMPT: str(i)}, float(i)) for i in range(1, 9)
    ]
    runs.append(RunView("r9", "FAILURE", {t.FAILED_STEP: "image_edit"}, 9.0))
    assert failures_per_step(runs) == {"image_edit": 1}


@pytest.fixture
def down_app(tmp_path: Path):
    port = closed_port()
    return create_app(
        {
            "AUTH_MODE": "disabled",
            "DAGSTER_GRAPHQL_URL": f"http://127.0.0.1:{closed_port()}/graphql",
            "RATELIMIT_STORAGE_URI": f"redis://127.0.0.1:{port}/0",
            "STATE_DB_URL": f"sqlite:///{tmp_path / 'state.db'}",
            "MEDIA_DIR": str(tmp_path / "media"),
            "UPLOAD_DIR": str(tmp_path / "uploads"),
        }
    ), port


def test_execute_while_the_rate_limit_store_is_down_is_a_503_naming_nothing(down_app) -> None:
    app, port = down_app
    response = app.test_client().post(
        "/workflows/execute",
        data={"workflow_id": "img-edit-to-video", "file": (SAMPLE_IMAGE.open("rb"), "a.jpg")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 503, response.json
    assert response.json["error"]["code"] == "dependency_unavailable"
    assert response.headers["Retry-After"]
    assert b"127.0.0.1" not in response.data and str(port).encode() not in response.data


def test_healthz_reports_each_dependency(down_app, monkeypatch) -> None:
    app, port = down_app
    monkeypatch.setenv("PROVIDER_LIMITS_REDIS_URL", f"redis://127.0.0.1:{port}/1")
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    body = response.json
    assert body["status"] == "degraded"
    assert body["dependencies"] == {
        "orchestrator": "unavailable",
        "state_db": "ok",
        "rate_limits": "unavailable",
        "provider_limiter": "unavailable",
        "media_storage": "ok",
    }
    assert b"127.0.0.1" not in response.data and str(port).encode() not in response.data
