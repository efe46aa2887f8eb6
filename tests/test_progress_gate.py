"""Progress lines: only a changed percentage, at most every few seconds, the end always."""

from __future__ import annotations

from tests.fakes.clock import FakeClock
from wf_core.progress import ProgressGate


def test_progress_is_logged_when_it_changes_and_not_too_often() -> None:
    clock = FakeClock()
    gate = ProgressGate(min_interval=2.0, clock=clock)
    assert gate.admit(10)  # the first report
    assert not gate.admit(10)  # unchanged
    clock.advance(1.0)
    assert not gate.admit(20)  # changed, but too soon
    clock.advance(1.0)
    assert gate.admit(25)
    assert not gate.admit(25)
    clock.advance(0.1)
    assert gate.admit(100)  # the end is never held back
    assert not gate.admit(100)
