"""Supabase's public signing keys (JWKS), fetched over HTTP, cached, refetched on a new `kid`."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import httpx
from jwt import PyJWK
from jwt.exceptions import PyJWTError

log = logging.getLogger(__name__)

JWKS_PATH = "/auth/v1/.well-known/jwks.json"


class UnknownKeyError(Exception):
    """The token names a `kid` the key set does not hold."""


class JwksUnavailableError(Exception):
    """The key set could not be fetched, so the token can be neither accepted nor refused."""


def jwks_url(supabase_url: str) -> str:
    """Where a Supabase project publishes its signing keys."""
    return supabase_url.rstrip("/") + JWKS_PATH


class JwksCache:
    """Signing keys by `kid`: cached for `ttl` seconds, refetched at most once per
    `min_refetch` seconds for an unknown `kid`, one fetch at a time.

    Readers never wait on a fetch for a key they already hold: a stale cache is refreshed
    only by the thread that wins the fetch lock, and the others go on with the old keys.
    """

    def __init__(
        self,
        url: str,
        algorithms: list[str],
        *,
        ttl: float = 600.0,
        min_refetch: float = 30.0,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.algorithms = list(algorithms)
        self.ttl = ttl
        self.min_refetch = min_refetch
        self.timeout = timeout
        self._clock = clock
        # Replaced whole, never mutated, so readers need no lock.
        self._keys: dict[str, PyJWK] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._unknown_kid_at: float | None = None
        self._last_failed = False
        self._fetch_lock = threading.Lock()

    def get(self, kid: str) -> PyJWK:
        """The key for `kid`; raises `UnknownKeyError` or `JwksUnavailableError`."""
        if kid not in self._keys:
            self._refresh(wanted_kid=kid)
        elif self._is_stale():
            self._refresh(wanted_kid=None)
        key = self._keys.get(kid)
        if key is not None:
            return key
        if self._last_failed:
            raise JwksUnavailableError(f"cannot fetch {self.url}")
        raise UnknownKeyError(kid)

    def _is_stale(self) -> bool:
        fetched_at = self._fetched_at
        return fetched_at is None or self._clock() - fetched_at >= self.ttl

    def _recently(self, moment: float | None) -> bool:
        return moment is not None and self._clock() - moment < self.min_refetch

    def _refresh(self, *, wanted_kid: str | None) -> None:
        # Holding a (stale) key for the token, a thread does not queue behind a fetch.
        if not self._fetch_lock.acquire(blocking=wanted_kid is not None):
            return
        try:
            if self._may_fetch(wanted_kid):
                self._fetch(wanted_kid)
        finally:
            self._fetch_lock.release()

    def _may_fetch(self, wanted_kid: str | None) -> bool:
        if wanted_kid is None:  # routine refresh of a stale cache
            return self._is_stale() and not self._recently(self._attempted_at)
        if wanted_kid in self._keys:  # fetched by the thread we queued behind
            return False
        if self._fetched_at is None:  # no key set yet: first fetch, or retry after a failure
            return not self._recently(self._attempted_at)
        # An unknown kid may be a rotation; random kids must not turn into a fetch storm.
        return not self._recently(self._unknown_kid_at)

    def _fetch(self, wanted_kid: str | None) -> None:
        now = self._clock()
        self._attempted_at = now
        if wanted_kid is not None and self._fetched_at is not None:
            self._unknown_kid_at = now
        try:
            response = httpx.get(self.url, timeout=self.timeout)
            response.raise_for_status()
            keys = self._parse(response.json())
        except (httpx.HTTPError, ValueError) as exc:
            # Keep the keys we have: an outage of the key endpoint must not log everyone out.
            self._last_failed = True
            log.warning("JWKS fetch from %s failed: %s", self.url, exc)
            return
        self._keys = keys
        self._fetched_at = now
        self._last_failed = False

    def _parse(self, document: object) -> dict[str, PyJWK]:
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise ValueError("JWKS document has no 'keys' list")
        keys: dict[str, PyJWK] = {}
        for data in document["keys"]:
            if not isinstance(data, dict) or not isinstance(data.get("kid"), str):
                continue
            try:
                key = PyJWK(data)
            except PyJWTError:
                continue
            # Only keys whose algorithm is configured; an `oct` key here would be a secret.
            if key.algorithm_name in self.algorithms:
                keys[data["kid"]] = key
        return keys
