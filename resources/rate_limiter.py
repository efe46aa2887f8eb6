"""The shared provider rate limiter: every run worker on every host asks Redis before a create.

One atomic Lua script per attempt keeps, per bucket (wf_core.rate_limit):
- a sliding-window log of the creates admitted (a sorted set of times), so at most
  `creates` go out in any `window_seconds`;
- the predictions still at the provider (`concurrent`, when bounded), each entry expiring
  on its own in case its release is lost;
- the waiters, in fair order: start-time fair queueing by user. A user's k-th waiting
  create is ranked after every other user's (k-1)-th, so one user's 200 waiting creates
  put another user's single create behind at most one of theirs per free slot.
A waiter may go when its rank is below the free capacity; otherwise it sleeps a little
and asks again (its place is kept), up to `max_wait`, then gives up with a retryable
`rate_limit` error (the retry sensor takes it from there). Redis' own clock (TIME) is
the only clock, so hosts whose clocks differ still share one window.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from wf_core.config import EngineSettings
from wf_core.errors import RetryableError
from wf_core.rate_limit import RateLimit, RateLimitTable, limits_from_env

# KEYS: waiters (zset), members (hash ticket -> member), seen (hash ticket -> time),
#       vfinish (hash user -> next start), vtime (string), log (zset), inflight (zset), seq
# ARGV: ticket, user, creates, window, concurrent, waiter_ttl, inflight_ttl
ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local ticket, user = ARGV[1], ARGV[2]
local creates, window = tonumber(ARGV[3]), tonumber(ARGV[4])
local concurrent, waiter_ttl = tonumber(ARGV[5]), tonumber(ARGV[6])
local inflight_ttl = tonumber(ARGV[7])
-- Waiters that stopped asking (their worker died) lose their place.
local seen = redis.call('HGETALL', KEYS[3])
for i = 1, #seen, 2 do
  if tonumber(seen[i + 1]) < now - waiter_ttl then
    local member = redis.call('HGET', KEYS[2], seen[i])
    if member then redis.call('ZREM', KEYS[1], member) end
    redis.call('HDEL', KEYS[2], seen[i])
    redis.call('HDEL', KEYS[3], seen[i])
  end
end
local member = redis.call('HGET', KEYS[2], ticket)
if not member then
  local v = tonumber(redis.call('GET', KEYS[5]) or '0')
  local start = math.max(v, tonumber(redis.call('HGET', KEYS[4], user) or '0'))
  redis.call('HSET', KEYS[4], user, start + 1)
  member = string.format('%016d', redis.call('INCR', KEYS[8])) .. '|' .. ticket
  redis.call('ZADD', KEYS[1], start, member)
  redis.call('HSET', KEYS[2], ticket, member)
end
redis.call('HSET', KEYS[3], ticket, now)
redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', now - window)
redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', now)
local free = creates - redis.call('ZCARD', KEYS[6])
if concurrent > 0 then
  free = math.min(free, concurrent - redis.call('ZCARD', KEYS[7]))
end
local rank = redis.call('ZRANK', KEYS[1], member)
if rank < free then
  local start = tonumber(redis.call('ZSCORE', KEYS[1], member))
  redis.call('ZREM', KEYS[1], member)
  redis.call('HDEL', KEYS[2], ticket)
  redis.call('HDEL', KEYS[3], ticket)
  if start > tonumber(redis.call('GET', KEYS[5]) or '0') then redis.call('SET', KEYS[5], start) end
  redis.call('ZADD', KEYS[6], now, ticket .. '@' .. now)
  if concurrent > 0 then redis.call('ZADD', KEYS[7], now + inflight_ttl, ticket) end
  for i = 1, 8 do redis.call('EXPIRE', KEYS[i], 86400) end
  return {1, '0'}
end
local wait = 0.05
local oldest = redis.call('ZRANGE', KEYS[6], 0, 0, 'WITHSCORES')
if free <= 0 and oldest[2] then wait = math.max(wait, tonumber(oldest[2]) + window - now) end
for i = 1, 8 do redis.call('EXPIRE', KEYS[i], 86400) end
return {0, tostring(wait)}
"""
# KEYS: waiters, members, seen, inflight   ARGV: ticket
LEAVE = """
local member = redis.call('HGET', KEYS[2], ARGV[1])
if member then redis.call('ZREM', KEYS[1], member) end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return redis.call('ZREM', KEYS[4], ARGV[1])
"""


@dataclass(frozen=True)
class Permit:
    """A create may go out now; `waited` seconds were spent in the queue."""

    bucket: str
    ticket: str
    waited: float


class ProviderRateLimiter:
    """Admits creates per bucket, fairly between users, shared through Redis."""

    def __init__(
        self,
        client: redis.Redis,
        limits: RateLimitTable,
        prefix: str = "wf:provider-limit",
        max_wait: float = 120.0,
        poll: float = 0.25,
        waiter_ttl: float = 30.0,
        inflight_ttl: float = 3600.0,
        margin: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.limits = limits
        self.prefix = prefix
        self.max_wait = max_wait
        self.poll = poll
        self.waiter_ttl = waiter_ttl
        self.inflight_ttl = inflight_ttl
        # Kept above the provider's window: a create admitted here reaches the provider a
        # little later, and the provider counts by arrival.
        self.margin = margin
        self.clock = clock
        self.sleep = sleep
        self._acquire = client.register_script(ACQUIRE)
        self._leave = client.register_script(LEAVE)

    def _keys(self, bucket: str) -> list[str]:
        names = ("waiters", "members", "seen", "vfinish", "vtime", "log", "inflight", "seq")
        # One hash tag per bucket: every key of a bucket lands on one Redis Cluster slot.
        return [f"{self.prefix}:{{{bucket}}}:{name}" for name in names]

    def try_acquire(self, limit: RateLimit, ticket: str, user: str) -> tuple[bool, float]:
        """One attempt: (admitted, seconds worth waiting before the next attempt).

        Redis unreachable is a retryable `server_unavailable` (nothing was sent to the
        provider): the limiter fails closed, the step waits for the retry sensor."""
        try:
            return self._try_acquire(limit, ticket, user)
        except redis.RedisError as exc:
            raise RetryableError(
                "server_unavailable",
                "The provider rate limiter is unavailable; the step waits and retries",
                LIMITER_DOWN_RETRY_SECONDS,
                dependency=True,
            ) from exc

    def _try_acquire(self, limit: RateLimit, ticket: str, user: str) -> tuple[bool, float]:
        ok, wait = self._acquire(
            keys=self._keys(limit.bucket),
            args=[
                ticket,
                user or "-",
                limit.creates,
                limit.window_seconds + self.margin,
                limit.concurrent,
                self.waiter_ttl,
                self.inflight_ttl,
            ],
        )
        return int(ok) == 1, float(wait)

    def acquire(self, provider: str, model: str, ticket: str, user: str) -> Permit | None:
        """Wait for this create's turn (None: no rule applies); RetryableError("rate_limit")
        after `max_wait`, the queue place given up."""
        limit = self.limits.for_call(provider, model)
        if limit is None:
            return None
        started = self.clock()
        while True:
            admitted, wait = self.try_acquire(limit, ticket, user)
            waited = self.clock() - started
            if admitted:
                return Permit(limit.bucket, ticket, waited)
            if waited >= self.max_wait:
                self._leave(keys=self._leave_keys(limit.bucket), args=[ticket])
                raise RetryableError(
                    "rate_limit",
                    f"{provider} {model}: waited {waited:.0f} s for a create slot"
                    f" ({limit.creates} per {limit.window_seconds:g} s)",
                    max(1.0, wait),
                    provider=provider,
                    model=model,
                )
            self.sleep(min(self.poll, wait))

    def release(self, provider: str, model: str, ticket: str) -> None:
        """The prediction is no longer at the provider (or was never created): free its slot."""
        limit = self.limits.for_call(provider, model)
        if limit is None:
            return
        try:
            self._leave(keys=self._leave_keys(limit.bucket), args=[ticket])
        except redis.RedisError:
            # The slot expires on its own (PROVIDER_LIMIT_INFLIGHT_TTL): never fail a step
            # that already has its output for it.
            _log.warning("provider limiter unavailable: slot %s left to expire", ticket)

    def _leave_keys(self, bucket: str) -> list[str]:
        keys = self._keys(bucket)
        return [keys[0], keys[1], keys[2], keys[6]]


_shared: dict[tuple[int, str], ProviderRateLimiter] = {}
_log = logging.getLogger(__name__)
# How long a step waits before it is retried while the limiter's Redis is down.
LIMITER_DOWN_RETRY_SECONDS = 10.0
_lock = threading.Lock()


def shared_rate_limiter() -> ProviderRateLimiter | None:
    """This process's limiter from PROVIDER_LIMITS_REDIS_URL (None when unset: no limits
    beyond the provider's own 429s), PROVIDER_RATE_LIMITS, PROVIDER_LIMIT_MAX_WAIT,
    PROVIDER_LIMIT_MARGIN_SECONDS and PROVIDER_LIMIT_INFLIGHT_TTL."""
    config = EngineSettings.from_env()
    url = config.provider_limits_redis_url or ""
    if not url:
        return None
    key = (os.getpid(), url)
    with _lock:
        limiter = _shared.get(key)
        if limiter is None:
            limiter = _shared[key] = ProviderRateLimiter(
                redis.Redis.from_url(url, socket_timeout=5),
                limits_from_env(),
                prefix=config.provider_limits_prefix,
                max_wait=config.provider_limit_max_wait,
                margin=config.provider_limit_margin_seconds,
                inflight_ttl=config.provider_limit_inflight_ttl,
            )
        return limiter
