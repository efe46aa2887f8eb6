"""Provider rate limits as data: how many creates per window, and how many at once.

Rules come from PROVIDER_RATE_LIMITS, `;`-separated, most specific first when matched:

    replicate=600/60                   # every Replicate model together: 600 creates a minute
    replicate:kling/v1.6=30/60,5       # this model: 30 creates a minute, 5 running at once

Defaults follow Replicate's published limits (create prediction: 600 requests per
minute, account-wide). A model's rule, when there is one, is its own bucket; otherwise
the provider's rule is shared by all its models. The shared limiter that enforces them
(Redis, every run worker on every host) lives in resources/rate_limiter.py.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

# Replicate: "You can call create prediction 600 times per minute."
DEFAULT_RULES = "replicate=600/60"


class RateLimitConfigError(ValueError):
    """PROVIDER_RATE_LIMITS cannot be read."""


@dataclass(frozen=True)
class RateLimit:
    """One bucket: `creates` per `window_seconds`, and at most `concurrent` at the provider
    (0: no bound)."""

    bucket: str
    creates: int
    window_seconds: float
    concurrent: int = 0


def parse_rules(text: str) -> dict[str, RateLimit]:
    """`provider[:model]=creates/seconds[,concurrent]` rules, keyed by `provider[:model]`."""
    rules: dict[str, RateLimit] = {}
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        key, sep, value = part.partition("=")
        rate, _, concurrent = value.partition(",")
        creates, slash, seconds = rate.partition("/")
        try:
            limit = RateLimit(
                bucket=key.strip(),
                creates=int(creates),
                window_seconds=float(seconds),
                concurrent=int(concurrent or 0),
            )
        except ValueError:
            raise RateLimitConfigError(f"bad PROVIDER_RATE_LIMITS rule {part!r}") from None
        if not sep or not slash or not limit.bucket or limit.creates < 1:
            raise RateLimitConfigError(f"bad PROVIDER_RATE_LIMITS rule {part!r}")
        if limit.window_seconds <= 0 or limit.concurrent < 0:
            raise RateLimitConfigError(f"bad PROVIDER_RATE_LIMITS rule {part!r}")
        rules[limit.bucket] = limit
    return rules


@dataclass(frozen=True)
class RateLimitTable:
    """Every rule; `for_call` picks the one a create obeys."""

    rules: Mapping[str, RateLimit]

    def for_call(self, provider: str, model: str) -> RateLimit | None:
        """The model's own rule, else its provider's, else None (unlimited)."""
        return self.rules.get(f"{provider}:{model}") or self.rules.get(provider)


def limits_from_env(env: Mapping[str, str] | None = None) -> RateLimitTable:
    """The table from PROVIDER_RATE_LIMITS (Replicate's published limits when unset)."""
    env = os.environ if env is None else env
    return RateLimitTable(parse_rules(env.get("PROVIDER_RATE_LIMITS") or DEFAULT_RULES))
