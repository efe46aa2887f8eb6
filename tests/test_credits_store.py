"""The credit ledger: reserve, capture and release, keyed so nothing is charged twice.

Every test runs on SQLite and on PostgreSQL; after every story the account row must equal
what the ledger alone says (wf_store.credits.totals).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import migrated
from tests.fakes.clock import FakeClock
from wf_store.credits import CreditStore, InsufficientCredits, step_shares, totals
from wf_store.state_db import engine_for

SHARES = {"upload": 0, "image_edit": 25, "video_generation": 25}


@pytest.fixture(params=["sqlite", "postgres"])
def credits(request, tmp_path: Path) -> Iterator[CreditStore]:
    url = (
        request.getfixturevalue("pg_url")
        if request.param == "postgres"
        else f"sqlite:///{tmp_path / 'state.db'}"
    )
    engine = engine_for(migrated(url))
    yield CreditStore(engine, clock=FakeClock(start=1_000_000.0))
    engine.dispose()


def consistent(credits: CreditStore, user: str) -> tuple[int, int]:
    """(balance, reserved) of the account, checked against the ledger's own sum."""
    entries, cursor = credits.entries(user, limit=1000)
    assert cursor is None
    from_ledger = totals(entries)
    account = credits.account(user)
    assert (account.balance, account.reserved) == (from_ledger.balance, from_ledger.reserved)
    return account.balance, account.reserved


def test_shares_split_the_cost_over_the_model_steps(specs) -> None:
    assert step_shares(specs["img-edit-to-video"]) == SHARES
    shares = step_shares(specs["style-transfer-video"])
    assert shares == {"upload": 0, "style": 23, "upscale": 23, "video": 24}
    assert sum(shares.values()) == specs["style-transfer-video"].credits_cost


def test_success_captures_every_share(credits: CreditStore) -> None:
    credits.grant("u", 120, "welcome")
    assert credits.reserve("u", "j1", "wf", SHARES) == 50
    assert consistent(credits, "u") == (70, 50)
    credits.settle("j1", {"upload", "image_edit"}, None)
    assert consistent(credits, "u") == (70, 25)
    credits.settle("j1", {"upload", "image_edit", "video_generation"}, "completed")
    credits.settle("j1", {"upload", "image_edit", "video_generation"}, "completed")  # repeat
    assert consistent(credits, "u") == (70, 0)
    assert [e.kind for e in credits.job_entries("j1")] == ["reserve", "capture", "capture"]
    assert credits.hold("j1").open is False


def test_permanent_failure_releases_the_unused_share(credits: CreditStore) -> None:
    credits.grant("u", 100, "welcome")
    credits.reserve("u", "j1", "wf", SHARES)
    credits.settle("j1", {"upload", "image_edit"}, "failed")
    credits.settle("j1", {"upload", "image_edit"}, "failed")
    assert consistent(credits, "u") == (75, 0)
    kinds = [(e.kind, e.step, e.amount) for e in credits.job_entries("j1")]
    assert kinds == [("reserve", "#1", 50), ("capture", "image_edit", 25), ("release", "#1", 25)]


def test_cancel_before_any_step_releases_everything(credits: CreditStore) -> None:
    credits.grant("u", 50, "welcome")
    credits.reserve("u", "j1", "wf", SHARES)
    credits.settle("j1", set(), "cancelled")
    assert consistent(credits, "u") == (50, 0)
    # A step whose run finished after the cancel is not charged: nothing is held any more.
    credits.settle("j1", {"image_edit"}, "cancelled")
    assert consistent(credits, "u") == (50, 0)


def test_retries_never_charge_twice(credits: CreditStore) -> None:
    credits.grant("u", 100, "welcome")
    credits.reserve("u", "j1", "wf", SHARES)
    credits.settle("j1", {"image_edit"}, None)
    # Retryable failures and their automatic retries: the hold stays open, nothing new.
    assert credits.reserve_again("j1", {"image_edit"}) == 0
    credits.settle("j1", {"image_edit"}, None)
    assert consistent(credits, "u") == (50, 25)
    # Failed for good, then retried by hand: only the missing step is held again.
    credits.settle("j1", {"image_edit"}, "failed")
    assert consistent(credits, "u") == (75, 0)
    assert credits.reserve_again("j1", {"image_edit"}) == 25
    assert consistent(credits, "u") == (50, 25)
    credits.settle("j1", {"upload", "image_edit", "video_generation"}, "completed")
    assert consistent(credits, "u") == (50, 0)
    steps = [(e.kind, e.step) for e in credits.job_entries("j1")]
    assert steps.count(("capture", "image_edit")) == 1
    assert ("reserve", "#2") in steps and ("release", "#1") in steps


def test_insufficient_balance_reserves_nothing(credits: CreditStore) -> None:
    credits.grant("u", 12, "welcome")
    with pytest.raises(InsufficientCredits) as refused:
        credits.reserve("u", "j1", "wf", SHARES)
    assert (refused.value.balance, refused.value.required) == (12, 50)
    assert credits.hold("j1") is None
    assert credits.job_entries("j1") == []
    assert consistent(credits, "u") == (12, 0)


def test_a_grant_reference_counts_once(credits: CreditStore) -> None:
    assert credits.grant("u", 10, "promo", reference="promo-42")
    assert not credits.grant("u", 10, "promo", reference="promo-42")
    assert consistent(credits, "u") == (10, 0)


def test_concurrent_reserves_never_overdraw(credits: CreditStore) -> None:
    credits.grant("u", 120, "welcome")  # room for two jobs of 50, not three
    results: list[str] = []
    start = threading.Barrier(6)

    def execute(n: int) -> None:
        start.wait()
        try:
            credits.reserve("u", f"job-{n}", "wf", SHARES)
            results.append("held")
        except InsufficientCredits:
            results.append("refused")

    threads = [threading.Thread(target=execute, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["held"] * 2 + ["refused"] * 4
    assert consistent(credits, "u") == (20, 100)


def test_entries_are_paged_newest_first(credits: CreditStore) -> None:
    for n in range(5):
        credits.grant("u", n + 1, "topup")
    page, cursor = credits.entries("u", limit=3)
    assert [e.amount for e in page] == [5, 4, 3]
    rest, end = credits.entries("u", limit=3, before=cursor)
    assert [e.amount for e in rest] == [2, 1] and end is None


def test_concurrent_retries_hold_once(credits: CreditStore) -> None:
    from wf_store.credits import HoldChanged

    credits.grant("u", 100, "welcome")
    credits.reserve("u", "j1", "wf", SHARES)
    credits.settle("j1", {"image_edit"}, "failed")
    start = threading.Barrier(4)
    outcomes: list[object] = []

    def retry() -> None:
        start.wait()
        try:
            outcomes.append(credits.reserve_again("j1", {"image_edit"}))
        except HoldChanged:
            outcomes.append("lost the race")

    threads = [threading.Thread(target=retry) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count(25) == 1
    assert [e.step for e in credits.job_entries("j1") if e.kind == "reserve"] == ["#1", "#2"]
    assert consistent(credits, "u") == (50, 25)
