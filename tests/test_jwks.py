"""The JWKS cache under concurrency: one fetch per storm, and no reader waits on a fetch."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from bridge_api.http.jwks import JwksCache, JwksUnavailableError, UnknownKeyError, jwks_url
from tests.fakes.clock import FakeClock
from tests.fakes.supabase_auth import FakeSupabaseAuth


@pytest.fixture
def supabase() -> Iterator[FakeSupabaseAuth]:
    with FakeSupabaseAuth() as fake:
        yield fake


def make_cache(fake: FakeSupabaseAuth, clock: FakeClock) -> JwksCache:
    return JwksCache(jwks_url(fake.url), ["ES256", "RS256"], clock=clock)


def wait_for_fetches(fake: FakeSupabaseAuth, count: int) -> None:
    deadline = time.monotonic() + 5
    while fake.fetches < count:
        assert time.monotonic() < deadline, "the fetch never reached the fake"
        time.sleep(0.01)


def test_unknown_kid_storm_fetches_once(supabase) -> None:
    cache = make_cache(supabase, FakeClock())
    cache.get(supabase.ec_key.kid)
    supabase.delay = 0.2  # keep the refetch in flight while the storm queues behind it
    barrier = threading.Barrier(20)

    def lookup(_: int) -> str:
        barrier.wait()
        try:
            cache.get("no-such-kid")
        except UnknownKeyError:
            return "unknown"
        return "found"

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(lookup, range(20)))
    assert results == ["unknown"] * 20
    assert supabase.fetches == 2


def test_first_fetch_is_shared_by_concurrent_callers(supabase) -> None:
    cache = make_cache(supabase, FakeClock())
    supabase.delay = 0.2
    with ThreadPoolExecutor(10) as pool:
        kids = list(pool.map(lambda _: cache.get(supabase.rsa_key.kid).key_id, range(10)))
    assert kids == [supabase.rsa_key.kid] * 10
    assert supabase.fetches == 1


def test_cached_key_does_not_wait_on_a_slow_refetch(supabase) -> None:
    cache = make_cache(supabase, FakeClock())
    cache.get(supabase.ec_key.kid)
    supabase.delay = 1.5
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(lambda: pytest.raises(UnknownKeyError, cache.get, "rotated?"))
        wait_for_fetches(supabase, 2)
        started = time.monotonic()
        assert cache.get(supabase.ec_key.kid).key_id == supabase.ec_key.kid
        assert time.monotonic() - started < 0.5
        pending.result()


def test_stale_key_served_while_one_thread_refreshes(supabase) -> None:
    clock = FakeClock()
    cache = make_cache(supabase, clock)
    cache.get(supabase.ec_key.kid)
    clock.advance(601)
    supabase.delay = 1.5
    with ThreadPoolExecutor(1) as pool:
        refreshing = pool.submit(cache.get, supabase.ec_key.kid)
        wait_for_fetches(supabase, 2)
        started = time.monotonic()
        assert cache.get(supabase.ec_key.kid).key_id == supabase.ec_key.kid
        assert time.monotonic() - started < 0.5
        refreshing.result()
    assert supabase.fetches == 2


def test_outage_without_keys_is_unavailable_and_retried_after_interval(supabase) -> None:
    clock = FakeClock()
    cache = make_cache(supabase, clock)
    supabase.status = 503
    with pytest.raises(JwksUnavailableError):
        cache.get(supabase.ec_key.kid)
    with pytest.raises(JwksUnavailableError):
        cache.get(supabase.ec_key.kid)
    assert supabase.fetches == 1
    supabase.status = 200
    clock.advance(30)
    assert cache.get(supabase.ec_key.kid).key_id == supabase.ec_key.kid
    assert supabase.fetches == 2


def test_symmetric_and_unconfigured_keys_are_ignored(supabase) -> None:
    cache = JwksCache(jwks_url(supabase.url), ["ES256"], clock=FakeClock())
    supabase.extra_jwks.append({"kty": "oct", "kid": "shared", "k": "c2VjcmV0", "alg": "HS256"})
    assert cache.get(supabase.ec_key.kid).algorithm_name == "ES256"
    for kid in ("shared", supabase.rsa_key.kid):
        with pytest.raises(UnknownKeyError):
            cache.get(kid)
