"""The shared provider limiter (real Redis) in front of the loopback Replicate fake.

A burst of 100 creates from two "hosts" (two limiters, their own Redis connections)
against a fake that answers 429 past 30 creates per window: none is throttled and every
prediction completes. Waiters are served fairly between users, and the rules parse.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import redis

from resources.rate_limiter import ProviderRateLimiter
from tests.fakes.replicate_handler import Fault, problem
from tests.fakes.replicate_server import THROTTLED, FakeReplicate, Script
from wf_core.errors import RetryableError
from wf_core.rate_limit import (
    RateLimit,
    RateLimitConfigError,
    RateLimitTable,
    limits_from_env,
    parse_rules,
)

REDIS_URL = "redis://127.0.0.1:6379/0"
TOKEN = "r8_limit_token"
MODEL = "acme/burst"
CREATES = 30
# The test's scaled minute: the fake allows 30 creates in any WINDOW seconds.
WINDOW = 1.0


def _redis_up() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_timeout=1).ping())
    except redis.RedisError:
        return False


pytestmark = pytest.mark.skipif(not _redis_up(), reason="needs Redis on 127.0.0.1:6379")


class WindowGate:
    """Replicate's create limit, as the fake's create-fault queue: past `limit` creates in
    any `window` seconds (by arrival) a create is answered 429 and counted."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit, self.window = limit, window
        self.arrivals: deque[float] = deque()
        self.throttled = 0

    def __bool__(self) -> bool:
        return True

    def popleft(self) -> Fault | None:
        now = time.monotonic()
        while self.arrivals and self.arrivals[0] <= now - self.window:
            self.arrivals.popleft()
        if len(self.arrivals) >= self.limit:
            self.throttled += 1
            status, body = problem(429, "Request was throttled", THROTTLED)
            return Fault(status, body, {"retry-after": "1"})
        self.arrivals.append(now)
        return None


@pytest.fixture
def prefix():
    name = f"test:provider-limit:{uuid.uuid4().hex}"
    yield name
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"{name}:*"):
        client.delete(key)


def limiter(prefix: str, rules: str, **kwargs) -> ProviderRateLimiter:
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    return ProviderRateLimiter(client, RateLimitTable(parse_rules(rules)), prefix=prefix, **kwargs)


def test_a_burst_of_100_meets_no_429_and_all_complete(prefix) -> None:
    rules = f"replicate={CREATES}/{WINDOW}"
    hosts = [limiter(prefix, rules, max_wait=120, poll=0.05) for _ in range(2)]
    gate = WindowGate(CREATES, WINDOW)
    with FakeReplicate(TOKEN, {MODEL}, set()) as fake:
        fake.script = Script(starting_polls=0, processing_polls=1)
        fake.create_faults = gate  # type: ignore[assignment]
        auth = {"Authorization": f"Bearer {TOKEN}"}
        # Ten run workers, each with its one kept-alive connection (the fake's listen
        # backlog is small).
        http = httpx.Client(headers=auth, timeout=30, limits=httpx.Limits(max_connections=10))

        def create(n: int) -> dict:
            hosts[n % 2].acquire("replicate", MODEL, f"intent-{n}", f"user-{n % 3}")
            answer = http.post(
                f"{fake.base_url}/models/{MODEL}/predictions",
                json={"input": {"prompt": f"frame {n}"}},
            )
            assert answer.status_code == 201, answer.text
            prediction = answer.json()
            while prediction["status"] not in ("succeeded", "failed", "canceled"):
                prediction = http.get(prediction["urls"]["get"]).json()
            return prediction

        with http, ThreadPoolExecutor(max_workers=10) as pool:
            results = list(pool.map(create, range(100)))
    assert gate.throttled == 0
    assert [r["status"] for r in results] == ["succeeded"] * 100
    assert fake.created_count() == 100


def test_one_user_queue_delays_another_user_by_at_most_one_slot(prefix) -> None:
    # One prediction at a time: a slot frees only when the one at the provider ends.
    gate = limiter(prefix, "replicate=1000000/60,1")
    limit = gate.limits.for_call("replicate", MODEL)
    assert gate.try_acquire(limit, "a-0", "user-a")[0]
    for n in range(1, 201):  # user A's 200 creates wait, in order
        assert not gate.try_acquire(limit, f"a-{n}", "user-a")[0]
    assert not gate.try_acquire(limit, "b-0", "user-b")[0]  # then user B's one
    admitted = []
    for _ in range(4):
        gate.release("replicate", MODEL, admitted[-1] if admitted else "a-0")
        # Everyone asks again, oldest first: the limiter picks by fair order, not by who asks.
        for ticket, user in [(f"a-{n}", "user-a") for n in range(1, 201)] + [("b-0", "user-b")]:
            if ticket not in admitted and gate.try_acquire(limit, ticket, user)[0]:
                admitted.append(ticket)
                break
    assert admitted[0] == "b-0"  # the first slot that frees goes to user B
    assert admitted[1:] == ["a-1", "a-2", "a-3"]  # then user A's, in their order


def test_a_waiter_gives_up_with_a_retryable_rate_limit(prefix) -> None:
    naps: list[float] = []
    ticks = iter(range(1000))
    gate = limiter(
        prefix,
        "replicate=1/60",
        max_wait=3,
        clock=lambda: float(next(ticks)),
        sleep=naps.append,
    )
    assert gate.acquire("replicate", MODEL, "first", "u") is not None
    with pytest.raises(RetryableError) as refused:
        gate.acquire("replicate", MODEL, "second", "u")
    assert refused.value.error_type == "rate_limit" and refused.value.retry_after >= 1
    assert naps and all(0 < nap <= 0.25 for nap in naps)  # polled, never slept past a poll
    # Its place was given up: a third waiter is first in line now.
    limit = gate.limits.for_call("replicate", MODEL)
    assert gate.client.zcard(gate._keys(limit.bucket)[0]) == 0


def test_models_without_a_rule_are_not_limited(prefix) -> None:
    gate = limiter(prefix, "replicate:acme/slow=1/60")
    assert gate.acquire("replicate", "acme/fast", "t1", "u") is None
    assert gate.acquire("local", "acme/slow", "t2", "u") is None
    assert gate.acquire("replicate", "acme/slow", "t3", "u").bucket == "replicate:acme/slow"


def test_rules_parse_and_default_to_replicates_published_limit() -> None:
    table = limits_from_env({})
    assert table.for_call("replicate", "any") == RateLimit("replicate", 600, 60.0, 0)
    rules = parse_rules("replicate=600/60; replicate:kling/v1.6=30/60,5")
    assert rules["replicate:kling/v1.6"] == RateLimit("replicate:kling/v1.6", 30, 60.0, 5)
    for bad in ("replicate", "replicate=0/60", "replicate=10/0", "replicate=x/60", "=1/1"):
        with pytest.raises(RateLimitConfigError):
            parse_rules(bad)


def test_two_hosts_share_one_window(prefix) -> None:
    hosts = [limiter(prefix, "replicate=5/60") for _ in range(2)]
    limit = hosts[0].limits.for_call("replicate", MODEL)
    admitted = []
    lock = threading.Lock()

    def ask(n: int) -> None:
        if hosts[n % 2].try_acquire(limit, f"t{n}", f"u{n}")[0]:
            with lock:
                admitted.append(n)

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(admitted) == 5


def test_generation_steps_take_their_turn_at_the_limiter(specs, bench, prefix, monkeypatch) -> None:
    import dagster as dg

    from resources import rate_limiter
    from tests.conftest import run_job
    from wf_core import tags as t
    from wf_core.job_ids import new_job_id
    from wf_store.predictions import PredictionStore

    monkeypatch.setenv("PROVIDER_LIMITS_REDIS_URL", REDIS_URL)
    monkeypatch.setenv("PROVIDER_LIMITS_PREFIX", prefix)
    monkeypatch.setenv("PROVIDER_RATE_LIMITS", "local=100/60")
    monkeypatch.setattr(rate_limiter, "_shared", {})  # a limiter built from this env
    spec = specs["img-edit-to-video"]
    job = new_job_id()
    with dg.instance_for_test() as instance:
        tags = t.job_tags(spec.id, job, "user-a", "test")
        assert run_job(spec, instance, bench.resources(), job, tags=tags).success
    intents = {row.id for row in PredictionStore(bench.state_db_url).for_job(job)}
    log = redis.Redis.from_url(REDIS_URL).zrange(f"{prefix}:{{local}}:log", 0, -1)
    assert len(intents) == 2
    assert {entry.decode().split("@")[0] for entry in log} == intents
