"""Idempotency keys: insert first, the loser waits for the winner's answer."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.conftest import migrated
from tests.fakes.clock import FakeClock
from wf_store.idempotency import DAY, IdempotencyStore
from wf_store.state_db import engine_for


@pytest.fixture(params=["sqlite", "postgres"])
def keys(request, tmp_path: Path):
    url = (
        request.getfixturevalue("pg_url")
        if request.param == "postgres"
        else f"sqlite:///{tmp_path / 'state.db'}"
    )
    engine = engine_for(migrated(url))
    yield IdempotencyStore(engine, clock=FakeClock(start=1_000_000.0))
    engine.dispose()


def test_first_claim_wins_and_repeats_read_its_answer(keys: IdempotencyStore) -> None:
    assert keys.claim("u", "k") is None
    pending = keys.claim("u", "k")
    assert pending is not None and not pending.answered
    keys.answer("u", "k", 202, '{"job_id": "j"}')
    again = keys.claim("u", "k")
    assert (again.status, again.body) == (202, '{"job_id": "j"}')
    assert keys.claim("someone-else", "k") is None  # keys are per user


def test_a_released_claim_leaves_nothing(keys: IdempotencyStore) -> None:
    assert keys.claim("u", "k") is None
    keys.release("u", "k")
    assert keys.get("u", "k") is None
    assert keys.claim("u", "k") is None


def test_a_key_expires_after_a_day(keys: IdempotencyStore) -> None:
    assert keys.claim("u", "k") is None
    keys.answer("u", "k", 202, "{}")
    keys.clock.advance(DAY + 1)
    assert keys.claim("u", "k") is None  # a new first request
    assert keys.get("u", "k").status is None


def test_waiting_ends_with_the_answer_or_the_release(keys: IdempotencyStore) -> None:
    assert keys.claim("u", "k") is None
    naps: list[float] = []

    def nap(seconds: float) -> None:
        naps.append(seconds)
        if len(naps) == 3:
            keys.answer("u", "k", 202, "{}")

    assert keys.wait("u", "k", timeout=10, sleep=nap).status == 202
    assert len(naps) == 3
    assert keys.claim("u", "k2") is None
    assert keys.wait("u", "k2", timeout=10, sleep=lambda _: keys.release("u", "k2")) is None
    assert keys.claim("u", "k3") is None
    assert not keys.wait("u", "k3", timeout=0.3, sleep=lambda _: None).answered


def test_concurrent_claims_have_one_winner(keys: IdempotencyStore) -> None:
    start = threading.Barrier(8)
    winners: list[int] = []

    def claim(n: int) -> None:
        start.wait()
        if keys.claim("u", "same") is None:
            winners.append(n)

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1


def test_purge_drops_answered_keys_past_the_day(keys: IdempotencyStore) -> None:
    assert keys.claim("u", "old") is None
    keys.answer("u", "old", 202, "{}")
    assert keys.claim("u", "in-flight") is None  # never answered: left for its request
    keys.clock.advance(DAY + 1)
    assert keys.claim("u", "new") is None
    keys.answer("u", "new", 202, "{}")
    assert keys.purge() == 1
    assert keys.get("u", "old") is None
    assert keys.get("u", "new") is not None and keys.get("u", "in-flight") is not None
