"""Admin routes against the job read model alone (no orchestrator needed to list or
dry-run): the role check, filters, paging and refusals."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from bridge_api import create_app
from tests.conftest import migrated
from tests.fakes.supabase_auth import FakeSupabaseAuth
from wf_core.job_ids import new_job_id
from wf_core.job_record import JobRecord
from wf_store.schema import jobs

T0 = 1_800_000_000.0
ADMIN = {"app_metadata": {"provider": "email", "role": "admin"}}


@pytest.fixture(scope="module")
def auth():
    with FakeSupabaseAuth() as fake:
        yield fake


@pytest.fixture
def env(tmp_path, auth):
    url = f"sqlite:///{tmp_path / 'state.db'}"
    rows = [
        ("failed", "invalid_key", "img-edit-to-video", "u1", T0 + 10),
        ("failed", "invalid_key", "style-transfer-video", "u2", T0 + 20),
        ("failed", "content_rejected", "img-edit-to-video", "u1", T0 + 30),
        ("completed", None, "img-edit-to-video", "u2", T0 + 40),
        ("pending_retry", "quota_exceeded", "img-edit-to-video", "u1", T0 + 50),
    ]
    ids, values = [], []
    for status, error, workflow, user, at in rows:
        job_id = new_job_id(at)
        ids.append(job_id)
        # Issue 23: the rows of the read model (wf_jobs), where the job index's were.
        values.append({
            "job_id": job_id, "workflow_id": workflow, "user_id": user, "status": status,
            "error_type": error, "failed_step": None, "attempt": 1, "run_id": None,
            "created_at": at, "updated_at": at, "version": 1,
            "record": JobRecord(job_id).to_json(),
        })  # fmt: skip
    engine = sa.create_engine(migrated(url))
    with engine.begin() as conn:
        conn.execute(jobs.insert(), values)
    engine.dispose()
    app = create_app(
        {
            "STATE_DB_URL": url,
            "SUPABASE_URL": auth.url,
            "DAGSTER_GRAPHQL_URL": "http://127.0.0.1:9/graphql",
            "LOG_FORMAT": "text",
        }
    )
    return {"client": app.test_client(), "ids": ids, "auth": auth}


def _get(env, path: str, claims=ADMIN):
    headers = {"Authorization": f"Bearer {env['auth'].token(**claims)}"}
    return env["client"].get(path, headers=headers)


def _post(env, path: str, body, claims=ADMIN):
    headers = {"Authorization": f"Bearer {env['auth'].token(**claims)}"}
    return env["client"].post(path, json=body, headers=headers)


@pytest.mark.parametrize(
    "claims",
    [{}, {"app_metadata": {"role": "user"}}, {"app_metadata": "admin"}, {"role": "admin"}],
)
def test_anyone_but_an_admin_gets_404(env, claims) -> None:
    assert _get(env, "/admin/jobs", claims).status_code == 404
    assert _post(env, "/admin/jobs/cancel", {"status": "failed"}, claims).status_code == 404
    assert _get(env, f"/admin/jobs/{env['ids'][0]}/history", claims).status_code == 404


def test_no_token_is_401(env) -> None:
    assert env["client"].get("/admin/jobs").status_code == 401


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status=failed&error_type=invalid_key", [1, 0]),
        ("status=failed&workflow_id=img-edit-to-video", [2, 0]),
        ("user_id=u1", [4, 2, 0]),
        ("since=2027-01-15T08:00:30Z&until=2027-01-15T08:00:50Z", [3, 2]),
        ("", [4, 3, 2, 1, 0]),
    ],
)
def test_filters(env, query: str, expected: list[int]) -> None:
    response = _get(env, f"/admin/jobs?{query}")
    assert response.status_code == 200
    assert [j["job_id"] for j in response.json["jobs"]] == [env["ids"][i] for i in expected]


def test_pages_follow_the_cursor(env) -> None:
    first = _get(env, "/admin/jobs?limit=2").json
    second = _get(env, f"/admin/jobs?limit=2&cursor={first['next_cursor']}").json
    third = _get(env, f"/admin/jobs?limit=2&cursor={second['next_cursor']}").json
    seen = [j["job_id"] for page in (first, second, third) for j in page["jobs"]]
    assert seen == list(reversed(env["ids"])) and third["next_cursor"] is None


def test_a_dry_run_counts_exactly_the_matching_jobs(env) -> None:
    body = {"error_type": "invalid_key", "dry_run": True}
    result = _post(env, "/admin/jobs/retry", body).json
    assert result == {"matched": 2, "acted": 0, "job_ids": [env["ids"][1], env["ids"][0]],
                      "skipped": []}  # fmt: skip


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, "empty_filter"),
        ({"dry_run": True}, "empty_filter"),
        ({"status": "broken"}, "invalid_filter"),
        ({"status": "failed", "dry_run": "yes"}, "invalid_filter"),
        ({"since": "yesterday"}, "invalid_filter"),
        ({"status": "failed", "limit": 0}, "invalid_limit"),
        ([1, 2], "invalid_json"),
    ],
)
def test_bad_bulk_requests_are_400(env, body, code: str) -> None:
    response = _post(env, "/admin/jobs/cancel", body)
    assert response.status_code == 400 and response.json["error"]["code"] == code
