"""Who is calling: a Supabase access token verified with PyJWT, or `local-dev` in the demo.

Keys are chosen by configuration: the JWKS of `SUPABASE_URL` (by the token's `kid`) for the
asymmetric algorithms, the legacy `SUPABASE_JWT_SECRET` for HS256. Each key accepts only its
own configured algorithms, so `alg: none` and HS256-signed-with-the-public-key both fail.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import jwt
from flask import Flask, current_app, g, request

from bridge_api.http.errors import ApiError
from bridge_api.http.jwks import JwksCache, JwksUnavailableError, UnknownKeyError, jwks_url

AUDIENCE = "authenticated"
LOCAL_USER = "local-dev"
EXTENSION = "bridge_auth"
SYMMETRIC = frozenset({"HS256", "HS384", "HS512"})
ASYMMETRIC = frozenset(
    {"ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "EdDSA"}
)
MIN_SECRET_LENGTH = 32  # what Supabase itself requires of a JWT secret
DISABLED_BANNER = (
    "\n" + "!" * 72 + "\n"
    "!!  AUTH_MODE=disabled: NO AUTHENTICATION. Every request is user 'local-dev'.\n"
    "!!  For the local demo only. Never expose this bridge to a network.\n" + "!" * 72
)
ENV_KEYS = (
    "AUTH_MODE",
    "SUPABASE_URL",
    "SUPABASE_JWT_SECRET",
    "AUTH_ALGORITHMS",
    "JWKS_CACHE_SECONDS",
    "JWKS_MIN_REFETCH_SECONDS",
    "JWT_LEEWAY_SECONDS",
)


def _refusal(code: str, message: str) -> ApiError:
    challenge = "Bearer" if code == "missing_token" else 'Bearer error="invalid_token"'
    return ApiError(401, code, message, headers={"WWW-Authenticate": challenge})


class TokenVerifier:
    """Checks a Supabase access token's signature, `exp` and `aud`, and returns its claims."""

    def __init__(
        self,
        *,
        jwks: JwksCache | None = None,
        secret: str | None = None,
        secret_algorithms: list[str] | None = None,
        leeway: float = 30.0,
    ) -> None:
        self.jwks = jwks
        self.secret = secret
        self.secret_algorithms = list(secret_algorithms or [])
        self.leeway = leeway

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], clock: Callable[[], float] = time.monotonic
    ) -> TokenVerifier:
        """A verifier from Flask config; raises RuntimeError when it cannot verify anything."""
        url = config.get("SUPABASE_URL") or None
        secret = config.get("SUPABASE_JWT_SECRET") or None
        if not url and not secret:
            raise RuntimeError(
                "AUTH_MODE=supabase needs SUPABASE_URL or SUPABASE_JWT_SECRET "
                "(or AUTH_MODE=disabled for the local demo)"
            )
        if secret and len(secret) < MIN_SECRET_LENGTH:
            raise RuntimeError(
                f"SUPABASE_JWT_SECRET is shorter than {MIN_SECRET_LENGTH} characters"
            )
        jwks_algs, secret_algs = _split_algorithms(config.get("AUTH_ALGORITHMS"), url, secret)
        jwks = None
        if url and jwks_algs:
            jwks = JwksCache(
                jwks_url(url),
                jwks_algs,
                ttl=_seconds(config, "JWKS_CACHE_SECONDS", 600),
                min_refetch=_seconds(config, "JWKS_MIN_REFETCH_SECONDS", 30),
                clock=clock,
            )
        leeway = _seconds(config, "JWT_LEEWAY_SECONDS", 30)
        return cls(jwks=jwks, secret=secret, secret_algorithms=secret_algs, leeway=leeway)

    def verify(self, token: str) -> dict[str, Any]:
        """The token's claims; raises a 401 `ApiError` (or 503 if keys cannot be fetched)."""
        try:
            header = jwt.get_unverified_header(token)
            key, algorithms = self._key_for(header)
            claims = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                audience=AUDIENCE,
                leeway=self.leeway,
                options={"require": ["exp", "sub", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise _refusal("token_expired", "The access token has expired") from None
        except jwt.InvalidAudienceError:
            raise _refusal("invalid_token", "The access token is not for this API") from None
        except jwt.MissingRequiredClaimError as exc:
            raise _refusal("invalid_token", f"The access token has no '{exc.claim}'") from None
        except jwt.PyJWTError:
            raise _refusal("invalid_token", "The access token is invalid") from None
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise _refusal("invalid_token", "The access token names no user")
        return claims

    def _key_for(self, header: dict[str, Any]) -> tuple[Any, list[str]]:
        # The header only picks which configured key to try; that key's algorithm list
        # comes from configuration, so the header can never widen what is accepted.
        if self.secret and header.get("alg") in self.secret_algorithms:
            return self.secret, self.secret_algorithms
        kid = header.get("kid")
        if self.jwks is None or not isinstance(kid, str):
            raise jwt.InvalidTokenError("no configured key fits this token")
        if header.get("alg") not in self.jwks.algorithms:  # refused before any JWKS fetch
            raise jwt.InvalidAlgorithmError("algorithm not allowed")
        try:
            return self.jwks.get(kid), self.jwks.algorithms
        except UnknownKeyError:
            raise jwt.InvalidTokenError("unknown kid") from None
        except JwksUnavailableError:
            raise ApiError(
                503,
                "auth_unavailable",
                "Cannot verify access tokens right now; try again shortly",
                headers={"Retry-After": "30"},
            ) from None


def _seconds(config: Mapping[str, Any], key: str, default: float) -> float:
    value = config.get(key)
    try:
        return default if value is None or value == "" else float(value)
    except (TypeError, ValueError):
        raise RuntimeError(f"{key} must be a number of seconds, not {value!r}") from None


def _split_algorithms(
    configured: str | list[str] | None, url: str | None, secret: str | None
) -> tuple[list[str], list[str]]:
    """The JWKS algorithms and the secret's algorithms, from `AUTH_ALGORITHMS` or defaults."""
    if not configured:
        return (["ES256", "RS256"] if url else []), (["HS256"] if secret else [])
    names = configured.split(",") if isinstance(configured, str) else list(configured)
    names = [n.strip() for n in names if n.strip()]
    if not names:
        raise RuntimeError("AUTH_ALGORITHMS names no algorithm")
    unknown = [n for n in names if n not in SYMMETRIC | ASYMMETRIC]
    if unknown:
        raise RuntimeError(f"AUTH_ALGORITHMS has unsupported algorithms: {unknown}")
    jwks_algs = [n for n in names if n in ASYMMETRIC]
    secret_algs = [n for n in names if n in SYMMETRIC]
    if jwks_algs and not url:
        raise RuntimeError(f"AUTH_ALGORITHMS {jwks_algs} need SUPABASE_URL")
    if secret_algs and not secret:
        raise RuntimeError(f"AUTH_ALGORITHMS {secret_algs} need SUPABASE_JWT_SECRET")
    return jwks_algs, secret_algs


def auth_config_from_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The auth settings set in the environment, for `app.config.from_mapping`."""
    environ = os.environ if environ is None else environ
    return {key: environ[key] for key in ENV_KEYS if environ.get(key)}


def init_auth(app: Flask, *, clock: Callable[[], float] = time.monotonic) -> None:
    """Set up token verification from `app.config`; refuses to start when misconfigured."""
    mode = str(app.config.get("AUTH_MODE") or "supabase").strip().lower()
    if mode == "disabled":
        app.logger.warning(DISABLED_BANNER)
        app.extensions[EXTENSION] = None
    elif mode == "supabase":
        app.extensions[EXTENSION] = TokenVerifier.from_config(app.config, clock)
    else:
        raise RuntimeError(f"AUTH_MODE must be 'supabase' or 'disabled', not {mode!r}")


def _bearer_token(allow_query_token: bool) -> str:
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _refusal("invalid_token", "Authorization must be 'Bearer <access token>'")
        return token.strip()
    if allow_query_token and request.args.get("access_token"):
        return request.args["access_token"]
    raise _refusal("missing_token", "Send 'Authorization: Bearer <access token>'")


def load_user(allow_query_token: bool = False) -> None:
    """Verify the caller and set `g.user_id`; usable as a blueprint's `before_request`."""
    if request.method == "OPTIONS":  # CORS preflights carry no credentials
        return
    if EXTENSION not in current_app.extensions:
        raise RuntimeError("init_auth(app) was not called")
    verifier: TokenVerifier | None = current_app.extensions[EXTENSION]
    if verifier is None:
        g.user_id, g.auth_claims = LOCAL_USER, {"sub": LOCAL_USER}
        return
    claims = verifier.verify(_bearer_token(allow_query_token))
    g.user_id, g.auth_claims = claims["sub"], claims


def require_user(view: Callable[..., Any] | None = None, *, allow_query_token: bool = False) -> Any:
    """`@require_user`, or `@require_user(allow_query_token=True)` on the SSE stream only."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            load_user(allow_query_token=allow_query_token)
            return func(*args, **kwargs)

        return wrapper

    return decorate(view) if view is not None else decorate


def current_user() -> str:
    """The verified caller's user id (the token's `sub`, or `local-dev`)."""
    user_id = g.get("user_id")
    if not user_id:
        raise RuntimeError("current_user() outside a view protected by require_user")
    return user_id
