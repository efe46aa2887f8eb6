"""The prediction store's compare-and-set transitions, on SQLite and on PostgreSQL.

Every test runs on both engines, with a clock the test moves by hand.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import migrated
from tests.fakes.clock import FakeClock
from wf_store.predictions import Prediction, PredictionStore

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


def intend(store: PredictionStore, job_id: str = "j1", step: str = "edit") -> Prediction:
    """An intent to create a prediction for one job step."""
    return store.intend(
        job_id=job_id,
        step=step,
        attempt=1,
        workflow_id="wf",
        provider="replicate",
        model="nano-banana",
        provider_model="google/nano-banana",
        input_digest="d" * 64,
        provider_input={"prompt": "a hat"},
        run_id="r1",
    )


def parked(
    store: PredictionStore, prediction_id: str, poll_in: float = 30.0, **intent
) -> Prediction:
    """A prediction the provider accepted and works on."""
    row = intend(store, **intent)
    return store.created(row.id, prediction_id, "starting", store.clock() + poll_in)


def completed(store: PredictionStore, prediction_id: str, **intent) -> Prediction:
    """A prediction the provider reported succeeded."""
    row = parked(store, prediction_id, **intent)
    update = {"id": prediction_id, "status": "succeeded", "output": ["https://x/o.png"]}
    assert store.apply_provider_update(update, "webhook")
    return state_of(store, row)


def state_of(store: PredictionStore, row: Prediction) -> Prediction:
    found = store.get(row.id)
    assert found is not None
    return found


def test_intend_then_created_parks(store: PredictionStore, clock: FakeClock) -> None:
    intent = intend(store)
    assert intent.state == "creating" and intent.prediction_id is None
    assert intent.created_at == START and intent.provider_input == {"prompt": "a hat"}
    clock.advance(2)
    row = store.created(intent.id, "p1", "starting", START + 30, expected_at=START + 60)
    assert (row.state, row.prediction_id, row.provider_status) == ("parked", "p1", "starting")
    assert (row.next_poll_at, row.expected_at, row.updated_at) == (
        START + 30,
        START + 60,
        START + 2,
    )
    assert row.completed_at is None and store.by_prediction_id("p1") == row
    assert store.latest("j1", "edit") == row and store.for_job("j1") == [row]
    # A second answer for the same intent changes nothing: the row is no longer creating.
    assert store.created(intent.id, "p2", "starting", START + 99) == row


def test_a_final_create_answer_completes(store: PredictionStore) -> None:
    intent = intend(store)
    row = store.created(intent.id, "p1", "succeeded", START, output="https://x/o.png")
    assert (row.state, row.completed_by, row.completed_at) == ("completed", "create", START)
    assert row.output == "https://x/o.png" and row.succeeded and row.terminal


def test_a_terminal_update_completes_once(store: PredictionStore, clock: FakeClock) -> None:
    row = parked(store, "p1")
    clock.advance(10)
    update = {"id": "p1", "status": "succeeded", "output": ["https://x/o.png"], "error": None}
    assert store.apply_provider_update(update, "webhook") is True
    done = state_of(store, row)
    assert (done.state, done.provider_status, done.progress) == ("completed", "succeeded", 100)
    assert (done.completed_by, done.completed_at) == ("webhook", START + 10)
    assert done.output == ["https://x/o.png"]
    clock.advance(10)
    # The same news again (a poll after the webhook), or an older view: no-ops.
    assert store.apply_provider_update(update, "poll") is False
    stale = {"id": "p1", "status": "processing", "progress": 40}
    assert store.apply_provider_update(stale, "webhook") is False
    failed = {"id": "p1", "status": "failed", "error": "late"}
    assert store.apply_provider_update(failed, "poll") is False
    assert state_of(store, row) == done


def test_a_running_update_moves_status_and_progress_only(store: PredictionStore) -> None:
    row = parked(store, "p1")
    update = {"id": "p1", "status": "processing", "progress": 40}
    assert store.apply_provider_update(update, "poll") is True
    now = state_of(store, row)
    assert (now.state, now.provider_status, now.progress) == ("parked", "processing", 40)


@pytest.mark.parametrize(
    "update",
    [
        {"id": "nobody", "status": "succeeded"},
        {"id": "p1"},
        {"status": "succeeded"},
        {"id": "p1", "status": "queued"},
    ],
    ids=["unknown-id", "no-status", "no-id", "unknown-status"],
)
def test_updates_that_name_nothing_are_no_ops(store: PredictionStore, update: dict) -> None:
    row = parked(store, "p1")
    assert store.apply_provider_update(update, "poll") is False
    assert state_of(store, row) == row


def test_an_error_object_is_kept_as_text(store: PredictionStore) -> None:
    row = parked(store, "p1")
    update = {"id": "p1", "status": "failed", "error": {"detail": "NSFW"}, "progress": 70}
    assert store.apply_provider_update(update, "poll")
    done = state_of(store, row)
    assert done.error == '{"detail": "NSFW"}' and done.progress == 70 and not done.succeeded


def test_a_webhook_for_the_intent_before_the_create_answer(store: PredictionStore) -> None:
    intent = intend(store)
    body = {"id": "p1", "status": "succeeded", "output": "https://x/o.png"}
    assert store.record_webhook("msg_1", body, intent_id=intent.id) is True
    early = state_of(store, intent)
    assert (early.state, early.prediction_id, early.completed_by) == ("completed", "p1", "webhook")
    # The create's answer comes late: it must not park a prediction that has ended.
    row = store.created(intent.id, "p1", "starting", START + 30)
    assert (row.state, row.prediction_id, row.provider_status) == ("completed", "p1", "succeeded")
    assert row.output == "https://x/o.png"


def test_a_webhook_naming_only_the_prediction_is_applied_at_create(
    store: PredictionStore,
) -> None:
    intent = intend(store)
    body = {"id": "p1", "status": "failed", "error": "boom"}
    assert store.record_webhook("msg_1", body) is True
    assert state_of(store, intent).state == "creating"  # nobody knows p1 yet
    row = store.created(intent.id, "p1", "starting", START + 30)
    assert (row.state, row.provider_status, row.error) == ("completed", "failed", "boom")


def test_a_repeated_webhook_id_is_kept_once(store: PredictionStore) -> None:
    row = parked(store, "p1")
    running = {"id": "p1", "status": "processing", "progress": 10}
    assert store.record_webhook("msg_1", running) is True
    done = {"id": "p1", "status": "succeeded", "output": "https://x/o.png"}
    assert store.record_webhook("msg_1", done) is False
    assert state_of(store, row).state == "parked"
    assert store.record_webhook("msg_2", done) is True
    assert state_of(store, row).state == "completed"


def test_due_for_poll_follows_the_clock(store: PredictionStore, clock: FakeClock) -> None:
    soon = parked(store, "p1", poll_in=10, job_id="j1")
    later = parked(store, "p2", poll_in=20, job_id="j2")
    completed(store, "p3", job_id="j3")  # ended: never polled
    assert store.due_for_poll(10) == []
    # A caller with its own clock (the sensor's) says what now is.
    assert [r.id for r in store.due_for_poll(10, now=START + 20)] == [soon.id, later.id]
    clock.advance(10)
    assert [r.id for r in store.due_for_poll(10)] == [soon.id]
    clock.advance(15)
    assert [r.id for r in store.due_for_poll(10)] == [soon.id, later.id]  # most overdue first
    assert [r.id for r in store.due_for_poll(1)] == [soon.id]
    store.polled(soon.id, "processing", 30, clock() + 60)
    assert [r.id for r in store.due_for_poll(10)] == [later.id]
    polled = state_of(store, soon)
    assert (polled.polls, polled.progress, polled.next_poll_at) == (1, 30, clock() + 60)


def test_ready_for_handoff_gives_completed_and_stale_hand_offs(
    store: PredictionStore, clock: FakeClock
) -> None:
    first = completed(store, "p1", job_id="j1")
    clock.advance(1)
    second = completed(store, "p2", job_id="j2")
    parked(store, "p3", job_id="j3")
    claimed = completed(store, "p4", job_id="j4")
    assert store.claim(claimed.id, "r9") is not None
    assert [r.id for r in store.ready_for_handoff(10, stale_after=120)] == [first.id, second.id]
    store.hand_off([first.id])
    assert state_of(store, first).state == "handed_off"
    assert [r.id for r in store.ready_for_handoff(10, stale_after=120)] == [second.id]
    stale_at = START + 1 + 120
    assert len(store.ready_for_handoff(10, stale_after=120, now=stale_at - 0.5)) == 1
    assert len(store.ready_for_handoff(10, stale_after=120, now=stale_at)) == 2
    clock.advance(120)
    # Its continuation never appeared: it is handed off again.
    assert [r.id for r in store.ready_for_handoff(10, stale_after=120)] == [first.id, second.id]
    assert [r.id for r in store.ready_for_handoff(1, stale_after=120)] == [first.id]


@pytest.mark.parametrize(
    "make,claimable",
    [
        (lambda s: intend(s), False),
        (lambda s: parked(s, "p1"), False),
        (lambda s: completed(s, "p1"), True),
        (lambda s: _handed_off(s), True),
        (lambda s: _consuming(s), True),  # a dead run's row is taken over by the next run
        (lambda s: _consumed(s), False),
        (lambda s: _abandoned(s), False),
        (lambda s: _cancel_requested(s), False),
    ],
    ids=[
        "creating",
        "parked",
        "completed",
        "handed_off",
        "consuming",
        "consumed",
        "abandoned",
        "cancel_requested",
    ],
)
def test_claim_only_an_ended_prediction(
    store: PredictionStore, make: Callable[[PredictionStore], Prediction], claimable: bool
) -> None:
    row = make(store)
    claimed = store.claim(row.id, "r2")
    if claimable:
        assert claimed is not None and (claimed.state, claimed.run_id) == ("consuming", "r2")
    else:
        assert claimed is None and state_of(store, row) == row


def _handed_off(store: PredictionStore) -> Prediction:
    row = completed(store, "p1")
    store.hand_off([row.id])
    return state_of(store, row)


def _consuming(store: PredictionStore) -> Prediction:
    row = completed(store, "p1")
    assert store.claim(row.id, "r1") is not None
    return state_of(store, row)


def _consumed(store: PredictionStore) -> Prediction:
    row = _consuming(store)
    assert store.consumed(row.id)
    return state_of(store, row)


def _abandoned(store: PredictionStore) -> Prediction:
    row = parked(store, "p1")
    assert store.abandon(row.id, "input changed")
    return state_of(store, row)


def _cancel_requested(store: PredictionStore) -> Prediction:
    row = parked(store, "p1")
    assert store.request_cancel(row.job_id) == 1
    return state_of(store, row)


def test_consumed_only_from_consuming_and_final(store: PredictionStore) -> None:
    row = completed(store, "p1")
    assert store.consumed(row.id) is False
    store.claim(row.id, "r1")
    assert store.consumed(row.id) is True and state_of(store, row).state == "consumed"
    assert store.abandon(row.id, "late") is False and store.expired(row.id, "late") is False
    assert store.request_cancel("j1") == 0


def test_expired_leaves_an_unsent_intent_alone(store: PredictionStore) -> None:
    intent = intend(store)
    assert store.expired(intent.id, "output gone") is False
    row = completed(store, "p1", job_id="j2")
    assert store.expired(row.id, "output gone") is True
    gone = state_of(store, row)
    assert (gone.state, gone.error) == ("abandoned", "output gone")


def test_request_cancel_moves_the_jobs_live_rows(store: PredictionStore, clock: FakeClock) -> None:
    creating = intend(store, step="a")
    running = parked(store, "p1", step="b")
    ended = completed(store, "p2", step="c")
    handed = completed(store, "p3", step="d")
    store.hand_off([handed.id])
    consuming = completed(store, "p4", step="e")
    store.claim(consuming.id, "r1")
    other_job = parked(store, "p5", job_id="j2")
    clock.advance(3)
    assert store.request_cancel("j1") == 4
    states = {r.step: r.state for r in store.for_job("j1")}
    assert states == {
        "a": "cancel_requested",
        "b": "cancel_requested",
        "c": "cancel_requested",
        "d": "cancel_requested",
        "e": "consuming",  # its output is being stored: the job gets it or nothing
    }
    assert {r.id for r in store.cancel_requests(10)} == {
        creating.id,
        running.id,
        ended.id,
        handed.id,
    }
    assert state_of(store, other_job).state == "parked"
    # The poller stops each at the provider, then gives it up.
    assert store.abandon(running.id, "the job was cancelled")
    assert state_of(store, running).state == "abandoned" and len(store.cancel_requests(10)) == 3
    assert store.count_by_state() == {
        "cancel_requested": 3,
        "abandoned": 1,
        "consuming": 1,
        "parked": 1,
    }


def test_latest_is_the_newest_row_of_the_step(store: PredictionStore, clock: FakeClock) -> None:
    old = parked(store, "p1")
    store.abandon(old.id, "input changed")
    clock.advance(1)
    new = parked(store, "p2")
    intend(store, step="other")
    assert store.latest("j1", "edit") == state_of(store, new)
    assert [r.id for r in store.for_job("j1") if r.step == "edit"] == [old.id, new.id]
    assert store.latest("j1", "missing") is None
    assert store.for_jobs(["j1", "j9"])["j9"] == []


ROWS = 12


def _at_once(*work: Callable[[], None]) -> None:
    """Run each function in its own thread, released together."""
    barrier = threading.Barrier(len(work))
    failures: list[BaseException] = []

    def go(fn: Callable[[], None]) -> None:
        try:
            barrier.wait(10)
            fn()
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            failures.append(exc)

    threads = [threading.Thread(target=go, args=(fn,)) for fn in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures, failures


def test_two_terminal_updates_at_once_complete_each_row_once(store: PredictionStore) -> None:
    rows = [parked(store, f"p{i}", job_id=f"j{i}") for i in range(ROWS)]
    won: dict[str, list[str]] = {row.id: [] for row in rows}

    def report(source: str) -> Callable[[], None]:
        def apply() -> None:
            for row in rows:
                update = {"id": row.prediction_id, "status": "succeeded", "output": source}
                if store.apply_provider_update(update, source):
                    won[row.id].append(source)

        return apply

    _at_once(report("webhook"), report("poll"))
    for row in rows:
        [winner] = won[row.id]
        done = state_of(store, row)
        assert (done.state, done.completed_by, done.output) == ("completed", winner, winner)


def test_two_hand_offs_at_once_leave_one_state(store: PredictionStore, clock: FakeClock) -> None:
    rows = [completed(store, f"p{i}", job_id=f"j{i}") for i in range(ROWS)]
    ids = [row.id for row in rows]
    clock.advance(5)
    _at_once(lambda: store.hand_off(ids), lambda: store.hand_off(ids))
    assert store.count_by_state() == {"handed_off": ROWS}
    assert {state_of(store, row).handed_off_at for row in rows} == {START + 5}
    store.hand_off(ids[:1], now=START + 50)
    assert state_of(store, rows[0]).handed_off_at == START + 50


def test_a_hand_off_racing_a_claim_never_undoes_the_claim(store: PredictionStore) -> None:
    rows = [completed(store, f"p{i}", job_id=f"j{i}") for i in range(ROWS)]
    ids = [row.id for row in rows]

    def claim_all() -> None:
        for row_id in ids:
            assert store.claim(row_id, "r2") is not None

    _at_once(lambda: store.hand_off(ids), claim_all)
    assert store.count_by_state() == {"consuming": ROWS}
    assert store.ready_for_handoff(ROWS, stale_after=0) == []
