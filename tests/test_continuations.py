"""The warm worker's inbox (sensors/continuations.py): launched runs first, a completion at
a queue limit tried again every 0.2 s for 5 s and then left to the sensor, a failure never
spins the loop. The time is passed in; the worker is a stand-in recording its calls."""

from __future__ import annotations

from typing import cast

from sensors.continuations import (
    RETRY_EVERY_SECONDS,
    RETRY_FOR_SECONDS,
    ContinuationWorker,
    Inbox,
    work_once,
)
from wf_store.wakeups import COMPLETED_CHANNEL, LAUNCH_CHANNEL


class StandIn:
    """Answers each piece of work as told; records the order of the calls."""

    def __init__(self, outcomes: dict[str, str]) -> None:
        self.outcomes = outcomes
        self.calls: list[str] = []

    def continue_prediction(self, intent_id: str) -> str:
        self.calls.append(intent_id)
        outcome = self.outcomes[intent_id]
        if outcome == "raise":
            raise ConnectionError("the state database did not answer")
        return outcome

    def execute_launched(self, run_id: str) -> bool:
        self.calls.append(run_id)
        return True


def _run(stand_in: StandIn, inbox: Inbox, now: float) -> None:
    work_once(cast(ContinuationWorker, stand_in), inbox, now)


def test_launched_runs_go_first_then_completions_in_arrival_order() -> None:
    stand_in = StandIn({"p1": "done", "p2": "gone"})
    inbox = Inbox()
    inbox.add(COMPLETED_CHANNEL, "p1", 0.0)
    inbox.add(LAUNCH_CHANNEL, "r1", 0.0)
    inbox.add(COMPLETED_CHANNEL, "p2", 0.0)
    inbox.add(COMPLETED_CHANNEL, "p1", 0.0)  # a repeated wake-up is one piece of work
    _run(stand_in, inbox, 0.0)
    assert stand_in.calls == ["r1", "p1", "p2"]
    assert not inbox.launches and not inbox.completions


def test_a_completion_at_a_limit_is_tried_again_then_left_to_the_sensor() -> None:
    stand_in = StandIn({"p1": "later"})
    inbox = Inbox()
    inbox.add(COMPLETED_CHANNEL, "p1", 0.0)
    _run(stand_in, inbox, 0.0)
    _run(stand_in, inbox, RETRY_EVERY_SECONDS / 2)  # not due yet
    assert stand_in.calls == ["p1"]
    _run(stand_in, inbox, RETRY_EVERY_SECONDS)
    assert stand_in.calls == ["p1", "p1"] and "p1" in inbox.completions
    _run(stand_in, inbox, RETRY_FOR_SECONDS + 1)
    assert "p1" not in inbox.completions  # the sensor's next tick takes it to the queue


def test_a_failure_is_tried_again_later_not_at_once() -> None:
    stand_in = StandIn({"p1": "raise"})
    inbox = Inbox()
    inbox.add(COMPLETED_CHANNEL, "p1", 0.0)
    _run(stand_in, inbox, 0.0)
    _run(stand_in, inbox, 0.01)
    assert stand_in.calls == ["p1"] and "p1" in inbox.completions
    _run(stand_in, inbox, RETRY_FOR_SECONDS + 1)
    assert stand_in.calls == ["p1", "p1"] and "p1" not in inbox.completions
