"""The retry queue: due rows only, none behind a held breaker, the oldest takes the probe."""

from __future__ import annotations

import pytest

from tests.conftest import migrated
from wf_store.predictions import PredictionStore
from wf_store.retry_queue import RetryQueue


@pytest.fixture(params=["sqlite", "postgres"])
def queue(request, tmp_path) -> RetryQueue:
    if request.param == "postgres":
        url = request.getfixturevalue("pg_url")
    else:
        url = f"sqlite:///{tmp_path / 'state.db'}"
    store = PredictionStore(migrated(url))
    yield RetryQueue(store)
    store.close()


def test_due_rows_skip_held_breakers_and_future_checks(queue: RetryQueue) -> None:
    assert queue.add("r1", "j1", "wf", "timeout", None, now=100.0)
    assert not queue.add("r1", "j1", "wf", "timeout", None, now=101.0)  # already waiting
    queue.add("r2", "j2", "wf", "quota_exceeded", "replicate:m", now=101.0)
    queue.add("r3", "j3", "wf", "quota_exceeded", "replicate:m", now=102.0)
    queue.add("r4", "j4", "wf", "rate_limit", None, now=103.0)
    queue.check_later("r4", 500.0)
    assert [w.run_id for w in queue.due(200.0, 10)] == ["r1", "r2", "r3"]
    assert [w.run_id for w in queue.due(200.0, 10, held_keys=["replicate:m"])] == ["r1"]
    assert [w.run_id for w in queue.due(200.0, 2)] == ["r1", "r2"]  # bounded per tick
    assert [w.run_id for w in queue.due(600.0, 10, held_keys=["replicate:m"])] == ["r1", "r4"]
    assert [w.run_id for w in queue.oldest_behind("replicate:m", 5)] == ["r2", "r3"]
    assert queue.count("replicate:m") == 2 and queue.count() == 4
    queue.remove(["r1", "r2"])
    assert [w.run_id for w in queue.oldest_behind("replicate:m")] == ["r3"]
    assert [w.checks for w in queue.due(600.0, 10)] == [0, 1]
