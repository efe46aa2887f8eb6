"""Supabase token auth against a loopback JWKS: every refusal is API.md's JSON with a 401."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

import jwt
import pytest
from flask import Blueprint, Flask, jsonify
from flask.testing import FlaskClient

from bridge_api import create_app
from bridge_api.http.auth import (
    ENV_KEYS,
    auth_config_from_env,
    current_user,
    init_auth,
    require_user,
)
from tests.fakes.clock import FakeClock
from tests.fakes.supabase_auth import LEGACY_SECRET, USER_ID, FakeSupabaseAuth, SigningKey

# Every auth setting cleared, so the developer's environment cannot leak into a case.
UNSET = dict.fromkeys(ENV_KEYS)
probe = Blueprint("auth_probe", __name__)


@probe.get("/probe")
@require_user
def protected():
    return jsonify({"user": current_user()})


@probe.get("/probe/stream")
@require_user(allow_query_token=True)
def stream():
    return jsonify({"user": current_user()})


def build_app(config: dict, clock: FakeClock | None = None) -> Flask:
    """The bridge app with auth from `config` and the probe routes."""
    app = create_app({"TESTING": True, **UNSET, **config})
    init_auth(app, clock=clock or FakeClock())
    app.register_blueprint(probe)
    return app


@pytest.fixture
def supabase() -> Iterator[FakeSupabaseAuth]:
    with FakeSupabaseAuth() as fake:
        yield fake


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


CONFIGS: dict[str, Callable[[FakeSupabaseAuth], dict]] = {
    "jwks": lambda fake: {"SUPABASE_URL": fake.url},
    "legacy": lambda fake: {"SUPABASE_JWT_SECRET": fake.jwt_secret},
    "both": lambda fake: {"SUPABASE_URL": fake.url, "SUPABASE_JWT_SECRET": fake.jwt_secret},
}


@pytest.fixture
def client(supabase: FakeSupabaseAuth, clock: FakeClock) -> FlaskClient:
    """JWKS and the legacy secret both configured: the widest door."""
    return build_app(CONFIGS["both"](supabase), clock).test_client()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_refused(response, code: str) -> None:
    assert response.status_code == 401
    assert response.is_json
    assert response.json == {"error": {"code": code, "message": response.json["error"]["message"]}}
    assert response.json["error"]["message"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


Mint = Callable[..., str]


def mint_for(config: str, fake: FakeSupabaseAuth) -> Mint:
    """Signs claims with a key the config accepts, so only the claim under test is wrong."""
    return fake.legacy_token if config == "legacy" else fake.token


def _tampered(mint: Mint) -> str:
    header, _, signature = mint().split(".")
    return f"{header}.{mint(sub='someone-else').split('.')[1]}.{signature}"


def _expired(mint: Mint) -> str:
    now = int(time.time())
    return mint(exp=now - 3600, iat=now - 7200)


BadHeaders = Callable[[FakeSupabaseAuth, Mint], dict[str, str]]
BAD_HEADERS: dict[str, tuple[BadHeaders, str]] = {
    "no header": (lambda fake, mint: {}, "missing_token"),
    "basic scheme": (lambda fake, mint: {"Authorization": "Basic dXNlcjpwYXNz"}, "invalid_token"),
    "bearer without token": (lambda fake, mint: {"Authorization": "Bearer "}, "invalid_token"),
    "not a jwt": (lambda fake, mint: bearer("not-a-jwt"), "invalid_token"),
    "garbage segments": (lambda fake, mint: bearer("a.b.c"), "invalid_token"),
    "expired": (lambda fake, mint: bearer(_expired(mint)), "token_expired"),
    "wrong aud": (lambda fake, mint: bearer(mint(aud="anon")), "invalid_token"),
    "no aud": (lambda fake, mint: bearer(mint(aud=None)), "invalid_token"),
    "no exp": (lambda fake, mint: bearer(mint(exp=None)), "invalid_token"),
    "no sub": (lambda fake, mint: bearer(mint(sub=None)), "invalid_token"),
    "empty sub": (lambda fake, mint: bearer(mint(sub="")), "invalid_token"),
    "tampered payload": (lambda fake, mint: bearer(_tampered(mint)), "invalid_token"),
    "alg none": (lambda fake, mint: bearer(fake.alg_none_token()), "invalid_token"),
    "alg none, RSA kid": (
        lambda fake, mint: bearer(fake.alg_none_token(fake.rsa_key)),
        "invalid_token",
    ),
    "HS256 with RSA public PEM": (
        lambda fake, mint: bearer(fake.confused_token()),
        "invalid_token",
    ),
    "HS256 with EC public PEM": (
        lambda fake, mint: bearer(fake.confused_token(fake.ec_key)),
        "invalid_token",
    ),
    "HS256 with public PEM, no kid": (
        lambda fake, mint: bearer(fake.confused_token(with_kid=False)),
        "invalid_token",
    ),
    "HS256 with a wrong secret": (
        lambda fake, mint: bearer(fake.legacy_token(secret="x" * 40)),
        "invalid_token",
    ),
    "HS384 with the legacy secret": (
        lambda fake, mint: bearer(jwt.encode(fake.claims(), fake.jwt_secret, "HS384")),
        "invalid_token",
    ),
    "ES256 signature under the RSA kid": (
        lambda fake, mint: bearer(fake.ec_key.sign(fake.claims(), kid=fake.rsa_key.kid)),
        "invalid_token",
    ),
    "unpublished kid": (lambda fake, mint: bearer(fake.unknown_kid_token()), "invalid_token"),
}


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("case", BAD_HEADERS)
def test_refusals_are_json_401(supabase, clock, config: str, case: str) -> None:
    make_headers, code = BAD_HEADERS[case]
    app = build_app(CONFIGS[config](supabase), clock)
    headers = make_headers(supabase, mint_for(config, supabase))
    assert_refused(app.test_client().get("/probe", headers=headers), code)


@pytest.mark.parametrize(
    ("config", "mint"),
    [
        ("jwks", lambda fake: fake.token(fake.ec_key)),
        ("jwks", lambda fake: fake.token(fake.rsa_key)),
        ("legacy", lambda fake: fake.legacy_token()),
        ("both", lambda fake: fake.token(fake.ec_key)),
        ("both", lambda fake: fake.token(fake.rsa_key)),
        ("both", lambda fake: fake.legacy_token()),
    ],
    ids=["ES256", "RS256", "HS256", "both-ES256", "both-RS256", "both-HS256"],
)
def test_valid_tokens_give_sub(supabase, clock, config: str, mint) -> None:
    app = build_app(CONFIGS[config](supabase), clock)
    response = app.test_client().get("/probe", headers=bearer(mint(supabase)))
    assert response.status_code == 200, response.json
    assert response.json == {"user": USER_ID}


def test_algorithms_come_from_config(supabase, clock) -> None:
    config = {"SUPABASE_URL": supabase.url, "AUTH_ALGORITHMS": "ES256"}
    client = build_app(config, clock).test_client()
    assert client.get("/probe", headers=bearer(supabase.token())).status_code == 200
    assert_refused(
        client.get("/probe", headers=bearer(supabase.token(supabase.rsa_key))), "invalid_token"
    )


def test_legacy_only_config_never_fetches_jwks(supabase, clock) -> None:
    client = build_app(CONFIGS["legacy"](supabase), clock).test_client()
    assert_refused(client.get("/probe", headers=bearer(supabase.token())), "invalid_token")
    assert supabase.fetches == 0


def test_keys_are_cached_until_ttl(supabase, clock) -> None:
    config = {"SUPABASE_URL": supabase.url, "JWKS_CACHE_SECONDS": 600}
    client = build_app(config, clock).test_client()
    for _ in range(5):
        assert client.get("/probe", headers=bearer(supabase.token())).status_code == 200
    assert supabase.fetches == 1
    clock.advance(601)
    assert client.get("/probe", headers=bearer(supabase.token())).status_code == 200
    assert supabase.fetches == 2


def test_unknown_kid_refused_after_exactly_one_refetch(supabase, clock) -> None:
    client = build_app(CONFIGS["jwks"](supabase), clock).test_client()
    assert client.get("/probe", headers=bearer(supabase.token())).status_code == 200
    assert supabase.fetches == 1
    assert_refused(
        client.get("/probe", headers=bearer(supabase.unknown_kid_token())), "invalid_token"
    )
    assert supabase.fetches == 2
    # A storm of unknown kids within the refetch interval fetches nothing more.
    for _ in range(5):
        response = client.get("/probe", headers=bearer(supabase.unknown_kid_token()))
        assert_refused(response, "invalid_token")
    assert supabase.fetches == 2
    # A key rotated in during that interval is found once the interval has passed.
    new_key = supabase.rotate()
    assert_refused(client.get("/probe", headers=bearer(supabase.token(new_key))), "invalid_token")
    clock.advance(31)
    assert client.get("/probe", headers=bearer(supabase.token(new_key))).status_code == 200
    assert supabase.fetches == 3


@pytest.mark.parametrize("alg", ["ES256", "RS256"])
def test_rotated_in_kid_accepted_after_refetch(supabase, clock, alg: str) -> None:
    client = build_app(CONFIGS["jwks"](supabase), clock).test_client()
    assert client.get("/probe", headers=bearer(supabase.token())).status_code == 200
    new_key = supabase.rotate(alg)
    response = client.get("/probe", headers=bearer(supabase.token(new_key, sub="rotated-user")))
    assert response.json == {"user": "rotated-user"}
    assert supabase.fetches == 2


def test_retired_kid_refused_after_ttl(supabase, clock) -> None:
    client = build_app(CONFIGS["jwks"](supabase), clock).test_client()
    assert client.get("/probe", headers=bearer(supabase.token())).status_code == 200
    supabase.retire(supabase.ec_key)
    clock.advance(601)
    assert_refused(client.get("/probe", headers=bearer(supabase.token())), "invalid_token")


def test_jwks_outage_keeps_cached_keys(supabase, clock) -> None:
    client = build_app(CONFIGS["jwks"](supabase), clock).test_client()
    assert client.get("/probe", headers=bearer(supabase.token())).status_code == 200
    supabase.status = 503
    clock.advance(601)
    assert client.get("/probe", headers=bearer(supabase.token())).status_code == 200
    assert supabase.fetches == 2


def test_jwks_unreachable_without_keys_is_503_json(supabase, clock) -> None:
    supabase.status = 500
    client = build_app(CONFIGS["jwks"](supabase), clock).test_client()
    response = client.get("/probe", headers=bearer(supabase.token()))
    assert response.status_code == 503
    assert response.json["error"]["code"] == "auth_unavailable"
    assert response.headers["Retry-After"]
    supabase.status = 200
    clock.advance(31)
    assert client.get("/probe", headers=bearer(supabase.token())).status_code == 200


def test_query_token_only_on_the_stream_route(client, supabase) -> None:
    token = supabase.token()
    response = client.get("/probe/stream", query_string={"access_token": token})
    assert response.json == {"user": USER_ID}
    assert_refused(client.get("/probe", query_string={"access_token": token}), "missing_token")
    assert_refused(client.get("/probe/stream"), "missing_token")
    expired = {"access_token": supabase.expired_token()}
    assert_refused(client.get("/probe/stream", query_string=expired), "token_expired")
    none = {"access_token": supabase.alg_none_token()}
    assert_refused(client.get("/probe/stream", query_string=none), "invalid_token")


def test_header_wins_over_query_token(client, supabase) -> None:
    response = client.get(
        "/probe/stream",
        headers=bearer(supabase.token(sub="from-header")),
        query_string={"access_token": supabase.token(sub="from-query")},
    )
    assert response.json == {"user": "from-header"}


def test_disabled_mode_is_local_dev_and_announced(caplog) -> None:
    with caplog.at_level(logging.WARNING):
        client = build_app({"AUTH_MODE": "disabled"}).test_client()
    assert any(
        r.levelno == logging.WARNING and "AUTH_MODE=disabled" in r.getMessage()
        for r in caplog.records
    )
    assert client.get("/probe").json == {"user": "local-dev"}
    assert client.get("/probe", headers=bearer("garbage")).json == {"user": "local-dev"}
    assert client.get("/probe/stream").json == {"user": "local-dev"}


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"AUTH_MODE": "supabase"}, "SUPABASE_URL or SUPABASE_JWT_SECRET"),
        ({}, "SUPABASE_URL or SUPABASE_JWT_SECRET"),
        ({"AUTH_MODE": "supabase", "SUPABASE_URL": ""}, "SUPABASE_URL or SUPABASE_JWT_SECRET"),
        ({"AUTH_MODE": "open"}, "AUTH_MODE"),
        ({"SUPABASE_JWT_SECRET": "short"}, "shorter than 32"),
        ({"SUPABASE_URL": "http://x", "AUTH_ALGORITHMS": ["none"]}, "unsupported"),
        ({"SUPABASE_URL": "http://x", "AUTH_ALGORITHMS": ["HS256"]}, "SUPABASE_JWT_SECRET"),
        ({"SUPABASE_JWT_SECRET": LEGACY_SECRET, "AUTH_ALGORITHMS": "RS256"}, "SUPABASE_URL"),
        ({"SUPABASE_URL": "http://x", "AUTH_ALGORITHMS": " , "}, "no algorithm"),
        ({"SUPABASE_URL": "http://x", "JWKS_CACHE_SECONDS": "ten"}, "JWKS_CACHE_SECONDS"),
    ],
)
def test_start_up_refused_without_usable_config(config: dict, match: str) -> None:
    with pytest.raises(RuntimeError, match=match):
        init_auth(create_app({"TESTING": True, **UNSET, **config}))


def test_config_from_environment() -> None:
    environ = {"AUTH_MODE": "disabled", "SUPABASE_URL": "", "JWKS_CACHE_SECONDS": "60", "X": "1"}
    assert auth_config_from_env(environ) == {"AUTH_MODE": "disabled", "JWKS_CACHE_SECONDS": "60"}


def test_signing_key_jwk_is_public_only() -> None:
    jwk = SigningKey.generate("RS256").public_jwk()
    assert jwk["kty"] == "RSA" and "d" not in jwk and jwk["alg"] == "RS256"
