"""Credits at the bridge: 402 with nothing held, GET /credits, the admin grant, the CLI."""

from __future__ import annotations

import threading

import pytest

from bridge_api.cli.credits import main as credits_cli
from tests.bridge_fakes import LaunchingGateway, bearer, bridge_app, execute
from wf_store.credits import CreditStore, totals

ADMIN = {"app_metadata": {"provider": "email", "role": "admin"}}


@pytest.fixture
def app(tmp_path):
    return bridge_app(tmp_path, LaunchingGateway(), CREDITS="on")


def grant(client, user: str, amount: int, **extra):
    body = {"user_id": user, "amount": amount, "reason": "test", **extra}
    return client.post("/admin/credits/grant", json=body, headers=bearer("boss", **ADMIN))


def test_execute_without_credits_is_402_and_holds_nothing(app) -> None:
    client = app.test_client()
    grant(client, "user-a", 12)
    answer = execute(client, bearer())
    assert answer.status_code == 402
    error = answer.json["error"]
    assert (error["code"], error["balance"], error["required"]) == ("insufficient_credits", 12, 50)
    assert app.extensions["dagster"].launches == []
    account = client.get("/credits", headers=bearer()).json
    assert (account["balance"], account["reserved"]) == (12, 0)
    assert [e["kind"] for e in account["entries"]] == ["grant"]


def test_execute_holds_the_cost(app) -> None:
    client = app.test_client()
    grant(client, "user-a", 120)
    job = execute(client, bearer()).json["job_id"]
    account = client.get("/credits", headers=bearer()).json
    assert (account["balance"], account["reserved"]) == (70, 50)
    assert account["entries"][0] == {
        **account["entries"][0],
        "job_id": job,
        "kind": "reserve",
        "amount": 50,
    }


def test_a_failed_launch_gives_the_hold_back(app) -> None:
    client = app.test_client()
    grant(client, "user-a", 50)
    app.extensions["dagster"].fail_launch = True
    assert execute(client, bearer()).status_code == 503
    account = client.get("/credits", headers=bearer()).json
    assert (account["balance"], account["reserved"]) == (50, 0)


def test_concurrent_executes_never_overdraw(app) -> None:
    grant(app.test_client(), "user-a", 120)  # two jobs of 50, not three
    start = threading.Barrier(5)
    codes: list[int] = []

    def post() -> None:
        client = app.test_client()
        start.wait()
        codes.append(execute(client, bearer()).status_code)

    threads = [threading.Thread(target=post) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(codes) == [202, 202, 402, 402, 402]
    assert len(app.extensions["dagster"].launches) == 2
    store = CreditStore(app.config["PREDICTION_STORE"].engine)
    entries, _ = store.entries("user-a", limit=100)
    assert totals(entries).balance == store.account("user-a").balance == 20


def test_cancel_releases_the_hold(app) -> None:
    client = app.test_client()
    grant(client, "user-a", 50)
    job = execute(client, bearer()).json["job_id"]
    assert client.post(f"/workflows/cancel/{job}", headers=bearer()).status_code == 200
    account = client.get("/credits", headers=bearer()).json
    assert (account["balance"], account["reserved"]) == (50, 0)
    assert [e["kind"] for e in account["entries"]] == ["release", "reserve", "grant"]


def test_only_admins_grant(app) -> None:
    client = app.test_client()
    body = {"user_id": "user-a", "amount": 10}
    plain = client.post("/admin/credits/grant", json=body, headers=bearer("user-a"))
    assert plain.status_code == 404
    assert grant(client, "user-a", 10, reference="welcome").json["granted"] == 10
    assert grant(client, "user-a", 10, reference="welcome").json["granted"] == 0  # counted once
    assert client.get("/credits", headers=bearer()).json["balance"] == 10


@pytest.mark.parametrize("amount", [0, -5, 1.5, "10", True, None])
def test_a_grant_must_be_a_positive_whole_number(app, amount) -> None:
    assert grant(app.test_client(), "user-a", amount).status_code == 422


def test_credits_off_holds_nothing(tmp_path) -> None:
    app = bridge_app(tmp_path, LaunchingGateway(), CREDITS="off")
    client = app.test_client()
    assert execute(client, bearer()).status_code == 202
    account = client.get("/credits", headers=bearer()).json
    assert account["credits_enabled"] is False and account["entries"] == []


def test_the_cli_grants(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("WF_STATE_DB_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    assert credits_cli(["grant", "user-a", "30", "--reference", "r1"]) == 0
    assert credits_cli(["grant", "user-a", "30", "--reference", "r1"]) == 0
    assert "balance 30, reserved 0" in capsys.readouterr().out


@pytest.mark.parametrize("query", ["limit=0", "limit=x", "cursor=-1", f"cursor={10**30}"])
def test_bad_pages_are_400(app, query) -> None:
    assert app.test_client().get(f"/credits?{query}", headers=bearer()).status_code == 400
