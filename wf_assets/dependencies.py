"""A step that fails because a service it depends on is down waits and resumes.

The state database, the provider limiter's Redis, media storage and the network to a
provider are dependencies, not the job's fault: their outages become a retryable
`server_unavailable` (the retry sensor resumes the step with its backoff once they
answer again, behind the breaker like any provider outage), with a message that names
no host, port or path. Everything else keeps its own classification.
"""

from __future__ import annotations

import httpx
import redis
import sqlalchemy.exc as sa_exc

from wf_core.errors import RetryableError

RETRY_AFTER_SECONDS = 15.0

# (exception types, what the user is told): the first that matches.
_DEPENDENCIES: list[tuple[tuple[type[BaseException], ...], str]] = [
    (
        (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.DisconnectionError),
        "The engine's database is unavailable; the step waits and retries",
    ),
    (
        (redis.ConnectionError, redis.TimeoutError),
        "A shared service is unavailable; the step waits and retries",
    ),
    (
        (httpx.TransportError, ConnectionError, TimeoutError),
        "A service the step needs is unreachable; the step waits and retries",
    ),
]


def as_dependency_outage(exc: BaseException) -> RetryableError | None:
    """The retryable error an outage of a dependency stands for, or None."""
    for types, message in _DEPENDENCIES:
        if isinstance(exc, types):
            return RetryableError(
                "server_unavailable", message, RETRY_AFTER_SECONDS, dependency=True
            )
    return None
