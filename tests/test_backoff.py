"""The durable backoff schedules: each caller's delays, pinned to what they were before
they shared `wf_core.backoff.backoff_seconds`, and the function itself."""

from __future__ import annotations

import random

from wf_core.backoff import backoff_seconds
from wf_core.circuit_breaker import BreakerBoard
from wf_core.job_state import RunView
from wf_core.retry_policy import RetrySettings, backoff_delay
from wf_store.callbacks import backoff as callback_backoff

# Full jitter seeded by the run id: these are the draws for run "run-a" (attempts 0..8).
RETRY_DELAYS_RUN_A = [
    3.463870226067135,
    3.463870226067135,
    6.92774045213427,
    13.85548090426854,
    27.71096180853708,
    55.42192361707416,
    110.84384723414831,
    207.8322135640281,
    207.8322135640281,
]
CALLBACK_DELAYS = [5.0, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 640.0, 1280.0, 2560.0]
BREAKER_COOLDOWNS = [60.0, 120.0, 240.0, 480.0, 960.0, 1800.0, 1800.0, 1800.0]


def test_retry_policy_delays_are_unchanged() -> None:
    run = RunView("run-a", "FAILURE", {}, 1.0)
    delays = [backoff_delay(run, attempt, RetrySettings()) for attempt in range(9)]
    assert delays == RETRY_DELAYS_RUN_A


def test_retry_policy_delay_is_the_same_for_the_same_run_and_differs_between_runs() -> None:
    settings = RetrySettings()
    one = RunView("run-a", "FAILURE", {}, 1.0)
    other = RunView("run-b", "FAILURE", {}, 1.0)
    assert backoff_delay(one, 4, settings) == backoff_delay(one, 4, settings)
    assert backoff_delay(one, 4, settings) != backoff_delay(other, 4, settings)


def test_callback_delivery_delays_are_unchanged() -> None:
    assert [callback_backoff(attempt) for attempt in range(11)] == CALLBACK_DELAYS
    assert callback_backoff(20) == 3600.0


def test_quota_breaker_cooldowns_are_unchanged() -> None:
    board, cooldowns = BreakerBoard(), []
    for attempt in range(8):
        board.on_quota_failure("p/m", "job-1", attempt, 100.0, 60.0, 1800.0)
        breaker = board.get("p/m")
        assert breaker is not None
        cooldowns.append(breaker.cooldown)
        board.start_probe("p/m", "job-1", attempt + 1, 100.0)
    assert cooldowns == BREAKER_COOLDOWNS


def test_backoff_doubles_from_base_up_to_cap() -> None:
    delays = [backoff_seconds(attempt, 10.0, 600.0) for attempt in range(1, 9)]
    assert delays == [10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 600.0, 600.0]


def test_an_attempt_below_one_counts_as_the_first() -> None:
    assert backoff_seconds(0, 5.0, 60.0) == backoff_seconds(-3, 5.0, 60.0) == 5.0


def test_jitter_draws_below_the_ceiling_from_the_given_generator() -> None:
    draws = [backoff_seconds(4, 10.0, 600.0, random.Random(seed)) for seed in range(50)]
    assert all(0.0 <= d <= 80.0 for d in draws)
    assert len(set(draws)) == 50
    again = backoff_seconds(4, 10.0, 600.0, random.Random(7))
    assert again == draws[7] == random.Random(7).uniform(0, 80.0)


def test_a_huge_attempt_is_capped_not_an_overflow() -> None:
    assert backoff_seconds(5000, 5.0, 3600.0) == 3600.0
