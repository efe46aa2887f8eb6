"""The credits sensor settles holds against real runs: success, permanent failure, cancel,
retry. The ledger sums to the expected balance after each, and a second tick changes
nothing."""

from __future__ import annotations

import dagster as dg
import pytest

from resources.state_database import StateDatabase
from sensors.credits import evaluate_credits
from tests.conftest import run_job
from tests.fakes.clock import FakeClock
from wf_assets.cancellation import marker_asset_key
from wf_core import tags as t
from wf_core.job_ids import new_job_id
from wf_store.credits import CreditStore, step_shares, totals

USER = "user-a"


@pytest.fixture
def world(specs, bench):
    spec = specs["img-edit-to-video"]
    predictions = StateDatabase(url=bench.state_db_url)
    store = CreditStore(predictions.store().engine)
    store.grant(USER, 100, "welcome")
    with dg.instance_for_test() as instance:
        yield spec, instance, predictions, store


def start(spec, instance, bench, store, attempt: int = 1, job_id: str | None = None) -> str:
    job_id = job_id or new_job_id()
    if attempt == 1:
        store.reserve(USER, job_id, spec.id, step_shares(spec))
    tags = t.job_tags(spec.id, job_id, USER, "test", attempt=attempt)
    run_job(spec, instance, bench.resources(), job_id, tags=tags)
    return job_id


def tick(instance, specs, predictions, clock) -> None:
    with dg.build_sensor_context(instance=instance) as context:
        evaluate_credits(context, specs, predictions, clock)


def settled(store: CreditStore) -> tuple[int, int]:
    entries, _ = store.entries(USER, limit=500)
    from_ledger = totals(entries)
    account = store.account(USER)
    assert (account.balance, account.reserved) == (from_ledger.balance, from_ledger.reserved)
    return account.balance, account.reserved


def test_success_captures_the_whole_cost(world, specs, bench) -> None:
    spec, instance, predictions, store = world
    clock = FakeClock.at_wall_time()
    job = start(spec, instance, bench, store)
    assert settled(store) == (50, 50)
    tick(instance, specs, predictions, clock)
    clock.advance(60)
    tick(instance, specs, predictions, clock)  # nothing more to do
    assert settled(store) == (50, 0)
    kinds = [(e.kind, e.step) for e in store.job_entries(job)]
    assert kinds == [
        ("reserve", "#1"),
        ("capture", "image_edit"),
        ("capture", "video_generation"),
    ]


def test_permanent_failure_pays_only_the_completed_step(world, specs, bench) -> None:
    spec, instance, predictions, store = world
    bench.set_faults({"image_to_video": {"error_type": "content_rejected"}})
    job = start(spec, instance, bench, store)
    tick(instance, specs, predictions, FakeClock.at_wall_time())
    assert settled(store) == (75, 0)
    assert [e.kind for e in store.job_entries(job)] == ["reserve", "capture", "release"]
    assert store.hold(job).open is False


def test_cancel_releases_what_was_not_used(world, specs, bench) -> None:
    spec, instance, predictions, store = world
    bench.set_faults({"image_to_video": {"error_type": "server_unavailable", "times": 1}})
    job = start(spec, instance, bench, store)  # stops at video_generation, retryable
    clock = FakeClock.at_wall_time()
    tick(instance, specs, predictions, clock)
    assert settled(store) == (50, 25)  # image_edit paid, the rest still held for the retry
    instance.report_runless_asset_event(  # the cancel mark, as the bridge writes it
        dg.AssetObservation(
            asset_key=marker_asset_key(spec), partition=job, description=t.cancel_description(USER)
        )
    )
    clock.advance(60)
    tick(instance, specs, predictions, clock)
    assert settled(store) == (75, 0)


def test_a_retry_never_charges_twice(world, specs, bench) -> None:
    spec, instance, predictions, store = world
    bench.set_faults({"image_to_video": {"error_type": "server_unavailable", "times": 1}})
    job = start(spec, instance, bench, store)
    clock = FakeClock.at_wall_time()
    tick(instance, specs, predictions, clock)
    # The retry runs every step again (an in-process run has no asset selection here).
    start(spec, instance, bench, store, attempt=2, job_id=job)
    clock.advance(60)
    tick(instance, specs, predictions, clock)
    assert settled(store) == (50, 0)
    captures = [e.step for e in store.job_entries(job) if e.kind == "capture"]
    assert sorted(captures) == ["image_edit", "video_generation"]
