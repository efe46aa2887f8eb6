"""/openapi.json: a valid OpenAPI 3 document of exactly the app's routes, fuzzed for 5xx."""

from __future__ import annotations

import io
import re
import time

import hypothesis.strategies as st
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from bridge_api import create_app
from bridge_api.openapi.schemas import ERROR_TYPES
from runtime.stack import DagsterStack
from tests.conftest import SAMPLE_IMAGE
from wf_core.errors import ERROR_TYPES as TAXONOMY

pytestmark = pytest.mark.stack

METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}
# Filled by `env`: job ids, media files and workflow ids that exist, for the fuzzer to use too.
SEEDED: dict[str, list[str]] = {}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """The bridge with auth off on a real webserver and daemon, and one completed job."""
    root = tmp_path_factory.mktemp("openapi")
    media = root / "media"
    with DagsterStack(root / "home", env={"MEDIA_DIR": str(media)}) as stack:
        app = create_app(
            {
                "DAGSTER_GRAPHQL_URL": stack.graphql_url,
                "MEDIA_DIR": str(media),
                "UPLOAD_DIR": str(media / "incoming"),
                "AUTH_MODE": "disabled",
                # The run must reach the handlers, not stop at the rate limits.
                "RATELIMIT_EXECUTE": "10000 per minute",
                "RATELIMIT_RETRY": "10000 per minute",
            }
        )
        client = app.test_client()
        data = {
            "workflow_id": "img-edit-to-video",
            "file": (io.BytesIO(SAMPLE_IMAGE.read_bytes()), "a.jpg"),
        }
        job_id = client.post("/workflows/execute", data=data).json["job_id"]
        deadline = time.time() + 90
        while client.get(f"/workflows/execution/{job_id}").json["status"] != "completed":
            assert time.time() < deadline, "the seed job never completed"
            time.sleep(0.3)
        files = sorted(str(p.relative_to(media)) for p in media.rglob("*") if p.is_file())
        workflows = [w["id"] for w in client.get("/workflows/list").json["workflows"]]
        SEEDED.update(job_id=[job_id], filename=files, workflow_id=workflows)
        yield {"app": app, "client": client}


def _flask_routes(app) -> set[tuple[str, str]]:
    routes = set()
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        routes |= {(path, method.lower()) for method in rule.methods & METHODS}
    return routes


def test_document_is_valid_openapi_of_exactly_the_apps_routes(env) -> None:
    document = env["client"].get("/openapi.json").json
    validate(document)
    documented = {(path, method) for path, item in document["paths"].items() for method in item}
    assert documented == _flask_routes(env["app"])


def test_public_routes_are_the_ones_api_md_names(env) -> None:
    document = env["client"].get("/openapi.json").json
    public = {
        path
        for path, item in document["paths"].items()
        for op in item.values()
        if op.get("security") == []
    }
    assert public == {"/workflows/list", "/healthz", "/openapi.json", "/media/{filename}"}


def test_error_types_are_the_taxonomy() -> None:
    assert set(ERROR_TYPES) == set(TAXONOMY)


@pytest.mark.parametrize(
    "options", ["[" * 100_000, '{"prompts": ' * 100_000], ids=["list", "object"]
)
def test_deeply_nested_options_are_a_400_not_a_500(env, options: str) -> None:
    data = {"workflow_id": "img-edit-to-video", "options": options}
    response = env["client"].post("/workflows/execute", data=data)
    assert response.status_code == 400 and response.json["error"]["code"] == "invalid_json"


def test_a_wrong_method_is_a_json_405_that_says_what_is_allowed(env) -> None:
    response = env["client"].delete("/workflows/list")
    assert response.status_code == 405 and response.json["error"]["code"] == "method_not_allowed"
    assert "GET" in response.headers["Allow"]


# Loaded at import from a bare app (serving the document needs no orchestrator), because
# schemathesis' fixture-based loader fails under pytest 9. Every case goes to `env`'s app.
schema = schemathesis.openapi.from_wsgi("/openapi.json", create_app({"AUTH_MODE": "disabled"}))
# No 5xx, and every answer is one the document declares. Left out: the auth checks (auth is
# off here) and negative_data_rejection (it counts a missing Authorization as invalid data).
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    unsupported_method,
]


@schema.hook
def flatmap_path_parameters(context, path_parameters: dict | None) -> st.SearchStrategy:
    """Random ids only ever find nothing: offer the seeded job and real media files too."""
    return _with_real_values(path_parameters)


@schema.hook
def flatmap_body(context, body) -> st.SearchStrategy:
    """Offer real workflow ids too, so that uploads get past the workflow lookup."""
    return _with_real_values(body) if isinstance(body, dict) else st.just(body)


def _with_real_values(values: dict | None) -> st.SearchStrategy:
    swaps = [{**values, key: real} for key in values or {} for real in SEEDED.get(key, [])]
    return st.sampled_from([values, *swaps])


# The stream route stays in, bounded: its ids are random (404) or the seeded job's, which has
# completed, so each stream replays its history and ends. A job that the fuzzer itself may
# start (schemathesis can send a valid 1x1 PNG) is never streamed: its id is never generated.
@schema.parametrize()
@settings(max_examples=30, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case, env) -> None:
    case.call_and_validate(app=env["app"], checks=CHECKS)
