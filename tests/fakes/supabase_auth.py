"""A loopback fake of Supabase Auth's JWKS endpoint, holding the keys that mint access tokens.

`FakeSupabaseAuth` serves `/auth/v1/.well-known/jwks.json` (public keys only, in Supabase's
format) from a real HTTP server on 127.0.0.1, counts fetches, can rotate and retire keys, be
slow or down, and mints tokens shaped like Supabase's: valid ones and every kind of bad one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

JWKS_PATH = "/auth/v1/.well-known/jwks.json"
LEGACY_SECRET = "super-secret-jwt-token-with-at-least-32-characters-long"
USER_ID = "8d0fd2b3-9ca7-4a5e-a4b0-1c6f0a7e5b21"


@dataclass(frozen=True)
class SigningKey:
    """One asymmetric signing key of the project: private half here, public half in the JWKS."""

    kid: str
    alg: str
    private_key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

    @classmethod
    def generate(cls, alg: str = "ES256", kid: str | None = None) -> SigningKey:
        """A new EC P-256 (ES256) or RSA-2048 (RS256) key."""
        if alg == "ES256":
            private: Any = ec.generate_private_key(ec.SECP256R1())
        elif alg == "RS256":
            private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            raise ValueError(alg)
        return cls(kid or str(uuid.uuid4()), alg, private)

    def public_jwk(self) -> dict[str, Any]:
        """The JWKS entry Supabase publishes for this key."""
        family = ECAlgorithm if self.alg == "ES256" else RSAAlgorithm
        jwk = family.to_jwk(self.private_key.public_key(), as_dict=True)
        return {**jwk, "kid": self.kid, "alg": self.alg, "use": "sig", "key_ops": ["verify"]}

    def public_pem(self) -> bytes:
        """The public key as PEM: what an algorithm-confusion attacker uses as an HMAC secret."""
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, claims: dict[str, Any], **header: Any) -> str:
        """A token signed with this key, its `kid` in the header unless overridden."""
        return jwt.encode(claims, self.private_key, self.alg, headers={"kid": self.kid, **header})


def supabase_claims(url: str, sub: str = USER_ID, **overrides: Any) -> dict[str, Any]:
    """An access token's claims as Supabase issues them; an override of None drops a claim."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": f"{url}/auth/v1",
        "sub": sub,
        "aud": "authenticated",
        "exp": now + 3600,
        "iat": now,
        "email": "user@example.com",
        "phone": "",
        "app_metadata": {"provider": "email", "providers": ["email"]},
        "user_metadata": {},
        "role": "authenticated",
        "aal": "aal1",
        "amr": [{"method": "password", "timestamp": now}],
        "session_id": str(uuid.uuid4()),
        "is_anonymous": False,
    }
    claims.update(overrides)
    return {name: value for name, value in claims.items() if value is not None}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_signed(header: dict[str, Any], claims: dict[str, Any], hmac_key: bytes | None) -> str:
    """A compact JWT built by hand: HS256 over `hmac_key`, or unsigned (`alg: none`) if None."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    if hmac_key is None:
        return signing_input + "."
    signature = hmac.new(hmac_key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


class FakeSupabaseAuth:
    """Supabase Auth's key endpoint on loopback plus its signing keys; a context manager."""

    def __init__(self, jwt_secret: str = LEGACY_SECRET) -> None:
        self.jwt_secret = jwt_secret
        self.ec_key = SigningKey.generate("ES256")
        self.rsa_key = SigningKey.generate("RS256")
        self.keys: list[SigningKey] = [self.ec_key, self.rsa_key]
        self.fetches = 0
        self.delay = 0.0  # seconds each JWKS answer waits
        self.status = 200  # anything else: the endpoint is down
        self.extra_jwks: list[dict[str, Any]] = []  # published verbatim, e.g. a bogus key
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        """The project's SUPABASE_URL."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def jwks(self) -> dict[str, Any]:
        """The published key set."""
        with self._lock:
            return {"keys": [key.public_jwk() for key in self.keys] + self.extra_jwks}

    def count_fetch(self) -> None:
        """Record one JWKS request."""
        with self._lock:
            self.fetches += 1

    def rotate(self, alg: str = "ES256") -> SigningKey:
        """Publish a new signing key (a new `kid`) alongside the old ones."""
        key = SigningKey.generate(alg)
        with self._lock:
            self.keys = [*self.keys, key]
        return key

    def retire(self, key: SigningKey) -> None:
        """Stop publishing a key."""
        with self._lock:
            self.keys = [k for k in self.keys if k.kid != key.kid]

    def claims(self, **overrides: Any) -> dict[str, Any]:
        """Supabase-shaped claims for this project."""
        return supabase_claims(self.url, **overrides)

    def token(self, key: SigningKey | None = None, **overrides: Any) -> str:
        """A valid access token (ES256 unless `key` says otherwise), claims overridable."""
        return (key or self.ec_key).sign(self.claims(**overrides))

    def legacy_token(self, secret: str | None = None, **overrides: Any) -> str:
        """An HS256 token signed with the legacy JWT secret (or `secret`)."""
        return jwt.encode(self.claims(**overrides), secret or self.jwt_secret, "HS256")

    def expired_token(self) -> str:
        """Expired an hour ago, well beyond any leeway."""
        return self.token(exp=int(time.time()) - 3600, iat=int(time.time()) - 7200)

    def alg_none_token(self, key: SigningKey | None = None) -> str:
        """Unsigned, `alg: none`, naming a published kid."""
        header = {"alg": "none", "typ": "JWT", "kid": (key or self.ec_key).kid}
        return hand_signed(header, self.claims(), None)

    def confused_token(self, key: SigningKey | None = None, with_kid: bool = True) -> str:
        """HS256 'signed' with the public key's PEM as the HMAC secret (algorithm confusion)."""
        key = key or self.rsa_key
        header = {"alg": "HS256", "typ": "JWT", **({"kid": key.kid} if with_kid else {})}
        return hand_signed(header, self.claims(), key.public_pem())

    def unknown_kid_token(self) -> str:
        """Validly shaped, signed by a key the JWKS does not publish."""
        return SigningKey.generate("ES256").sign(self.claims())

    def __enter__(self) -> FakeSupabaseAuth:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _handler_for(fake: FakeSupabaseAuth) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean

        def do_GET(self) -> None:
            if self.path.split("?")[0] != JWKS_PATH:
                self._send(404, {"code": 404, "msg": "not found"})
                return
            fake.count_fetch()
            time.sleep(fake.delay)
            if fake.status != 200:
                self._send(fake.status, {"message": "unavailable"})
            else:
                self._send(200, fake.jwks(), {"Cache-Control": "public, max-age=600"})

        def _send(self, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

    return Handler
