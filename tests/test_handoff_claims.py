"""Who continues a completed prediction: one claimer by compare-and-set, and the wake-up
sent in the transaction that records the completion (wf_store/wakeups.py).

On SQLite and PostgreSQL, with a clock the test moves by hand; the NOTIFY only on
PostgreSQL (SQLite has none, and sends nothing).
"""

from __future__ import annotations

import select
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import migrated
from tests.fakes.clock import FakeClock
from tests.test_prediction_store import completed, parked
from wf_store.predictions import HANDED_OFF, PredictionStore
from wf_store.wakeups import COMPLETED_CHANNEL, listen, received, workers_listening

START = 1_000_000.0


@pytest.fixture
def clock() -> FakeClock:
    """The store's clock."""
    return FakeClock(start=START)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path: Path, clock: FakeClock) -> Iterator[PredictionStore]:
    """A store on a SQLite file, or on a fresh PostgreSQL database."""
    if request.param == "postgres":
        url = request.getfixturevalue("pg_url")
    else:
        url = f"sqlite:///{tmp_path / 'state.db'}"
    store = PredictionStore(migrated(url), clock=clock)
    yield store
    store.close()


def test_of_two_claimers_of_one_read_exactly_one_wins(store: PredictionStore) -> None:
    row = completed(store, "p1")
    assert store.take_for_handoff(row)
    assert not store.take_for_handoff(row)  # the same read, a second claimer
    taken = store.get(row.id)
    assert taken is not None and taken.state == HANDED_OFF and taken.handed_off_at == START


def test_many_claimers_at_once_one_wins_each(store: PredictionStore) -> None:
    rows = [completed(store, f"p{i}", job_id=f"j{i}") for i in range(10)]
    wins: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(4)

    def claimer() -> None:
        barrier.wait()
        for row in rows:
            if store.take_for_handoff(row):
                with lock:
                    wins.append(row.id)

    threads = [threading.Thread(target=claimer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(wins) == sorted(row.id for row in rows)


def test_a_stale_hand_off_is_taken_again_once(store: PredictionStore, clock: FakeClock) -> None:
    row = completed(store, "p1")
    assert store.take_for_handoff(row)
    clock.advance(500)
    stale = store.ready_for_handoff(10, stale_after=120)
    assert [r.id for r in stale] == [row.id]
    assert store.take_for_handoff(stale[0])
    assert not store.take_for_handoff(stale[0])  # the sensor's second tick, same read
    assert not store.take_for_handoff(row)  # the first claimer's old read


def test_a_claimed_or_parked_row_is_not_taken(store: PredictionStore) -> None:
    waiting = parked(store, "p1")
    assert not store.take_for_handoff(waiting)
    row = completed(store, "p2", job_id="j2")
    assert store.claim(row.id, "run-1") is not None  # a run consumes it itself
    assert not store.take_for_handoff(row)


def test_a_completion_wakes_the_listener_when_committed(pg_url: str, clock: FakeClock) -> None:
    store = PredictionStore(migrated(pg_url), clock=clock)
    conn = listen(pg_url)
    try:
        assert workers_listening(store.engine) == 1
        row = parked(store, "p1")
        store.apply_provider_update({"id": "p1", "status": "processing"}, "webhook")
        store.apply_provider_update({"id": "p1", "status": "succeeded", "output": "x"}, "webhook")
        store.apply_provider_update({"id": "p1", "status": "succeeded", "output": "x"}, "poll")
        select.select([conn], [], [], 5)
        assert received(conn) == [(COMPLETED_CHANNEL, row.id)]  # once: the repeat moved nothing
        # The run that sees its own prediction end consumes it: nobody is woken.
        parked(store, "p2", job_id="j2")
        store.apply_provider_update({"id": "p2", "status": "succeeded", "output": "x"}, "run")
        select.select([conn], [], [], 0.5)
        assert received(conn) == []
    finally:
        conn.close()
        store.close()
