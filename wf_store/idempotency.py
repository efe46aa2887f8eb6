"""Idempotency keys: the first request with a key does the work; repeats get its answer.

Insert first: a request claims `(user, key)` with a row before it does anything. The
unique key settles concurrent duplicates: one insert wins, the others find the row and
wait for its answer (`status` and `body`, stored when the winner is done). A refused
winner deletes its claim, so a refused request stores nothing and a repeat is a new try.
A key is remembered for `ttl` seconds (24 h) from its first use.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from wf_store.schema import idempotency_keys as keys

DAY = 24 * 3600.0
MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class Stored:
    """A claimed key: `status` and `body` once its first request has answered."""

    created_at: float
    status: int | None
    body: str | None
    request_digest: str | None = None

    @property
    def answered(self) -> bool:
        """Whether the first request has finished and left its answer."""
        return self.status is not None


class IdempotencyStore:
    """`wf_idempotency_keys` on the engine's state database."""

    def __init__(
        self, engine: Engine, clock: Callable[[], float] = time.time, ttl: float = DAY
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.ttl = ttl

    def claim(self, user_id: str, key: str, request_digest: str | None = None) -> Stored | None:
        """Claim the key for a new request (None), or the claim already standing."""
        for _ in range(3):
            now = self.clock()
            try:
                with self.engine.begin() as conn:
                    conn.execute(
                        keys.insert().values(
                            user_id=user_id, key=key, created_at=now, request_digest=request_digest
                        )
                    )
                return None
            except IntegrityError:
                pass
            found = self.get(user_id, key)
            if found is None:
                continue  # the claim was just given up: try again
            if found.created_at > now - self.ttl:
                return found
            # Expired: drop it (only that old row) and claim afresh.
            with self.engine.begin() as conn:
                conn.execute(
                    keys.delete().where(
                        keys.c.user_id == user_id,
                        keys.c.key == key,
                        keys.c.created_at == found.created_at,
                    )
                )
        raise RuntimeError(f"idempotency key {key!r} could not be claimed")

    def get(self, user_id: str, key: str) -> Stored | None:
        """The key's row, if it is claimed."""
        query = sa.select(
            keys.c.created_at, keys.c.status, keys.c.body, keys.c.request_digest
        ).where(keys.c.user_id == user_id, keys.c.key == key)
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        return Stored(row.created_at, row.status, row.body, row.request_digest)

    def answer(self, user_id: str, key: str, status: int, body: str) -> None:
        """The first request's answer, for every repeat to come."""
        with self.engine.begin() as conn:
            conn.execute(
                keys.update()
                .where(keys.c.user_id == user_id, keys.c.key == key, keys.c.status.is_(None))
                .values(status=status, body=body)
            )

    def release(self, user_id: str, key: str) -> None:
        """The first request was refused: forget the claim (a repeat tries anew)."""
        with self.engine.begin() as conn:
            conn.execute(
                keys.delete().where(
                    keys.c.user_id == user_id, keys.c.key == key, keys.c.status.is_(None)
                )
            )

    def wait(
        self,
        user_id: str,
        key: str,
        timeout: float,
        sleep: Callable[[float], None] = time.sleep,
        interval: float = 0.1,
    ) -> Stored | None:
        """The claim once answered; None if it was given up; the pending claim at `timeout`."""
        waited = 0.0
        while True:
            found = self.get(user_id, key)
            if found is None or found.answered or waited >= timeout:
                return found
            sleep(interval)
            waited += interval

    def purge(self, before: float | None = None) -> int:
        """Delete answered keys older than the ttl; how many went."""
        cutoff = self.clock() - self.ttl if before is None else before
        with self.engine.begin() as conn:
            result = conn.execute(
                keys.delete().where(keys.c.created_at < cutoff, keys.c.status.is_not(None))
            )
        return int(result.rowcount)
