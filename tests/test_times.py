"""The time conversions: the unit is in every name, and no value's unit is guessed."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from wf_core import times

# 2026-01-02T03:04:09.123456Z
EPOCH_SECONDS = 1767323049.123456


def test_epoch_seconds_to_iso_has_milliseconds_by_default() -> None:
    assert times.epoch_seconds_to_iso(EPOCH_SECONDS) == "2026-01-02T03:04:09.123+00:00"
    assert times.epoch_seconds_to_iso(0) == "1970-01-01T00:00:00.000+00:00"


def test_epoch_seconds_to_iso_keeps_microseconds_when_asked() -> None:
    text = times.epoch_seconds_to_iso(EPOCH_SECONDS, timespec="auto")
    assert text == "2026-01-02T03:04:09.123456+00:00"


def test_epoch_seconds_to_datetime_is_aware_utc() -> None:
    value = times.epoch_seconds_to_datetime(EPOCH_SECONDS)
    assert value.tzinfo is UTC
    assert value == datetime(2026, 1, 2, 3, 4, 9, 123456, tzinfo=UTC)


@pytest.mark.parametrize(
    "text",
    [
        "2026-01-02T03:04:09.123456+00:00",
        "2026-01-02T03:04:09.123456Z",
        "2026-01-02T04:04:09.123456+01:00",
    ],
)
def test_iso_to_epoch_seconds(text: str) -> None:
    assert times.iso_to_epoch_seconds(text) == pytest.approx(EPOCH_SECONDS)


def test_iso_to_epoch_seconds_rejects_other_text() -> None:
    with pytest.raises(ValueError):
        times.iso_to_epoch_seconds("yesterday")


def test_iso_round_trips_through_epoch_seconds() -> None:
    text = times.epoch_seconds_to_iso(EPOCH_SECONDS)
    assert times.iso_to_epoch_seconds(text) == pytest.approx(1767323049.123)


def test_iso_to_epoch_ms_truncates() -> None:
    assert times.iso_to_epoch_ms("2026-01-02T03:04:09.123456+00:00") == 1767323049123


def test_seconds_and_milliseconds() -> None:
    assert times.seconds_to_ms(EPOCH_SECONDS) == 1767323049123
    assert times.seconds_to_ms(9.0) == 9000
    assert times.epoch_ms_to_seconds(1767323049123) == pytest.approx(1767323049.123)


def test_epoch_ms_text_is_milliseconds_whatever_its_size() -> None:
    """GraphQL sends event timestamps as milliseconds in text. The old converter guessed
    the unit by magnitude (below 1e11 meant seconds), so a millisecond value below 1e11
    (any time before 1973-03-03, as a test clock starting near zero gives) came out a
    thousand times too late; the unit is now stated, whatever the size."""
    assert times.epoch_ms_text_to_ms("1767323049123") == 1767323049123
    assert times.epoch_ms_text_to_ms("5000") == 5000
    assert _old_magnitude_guess("5000") == 5_000_000  # what the guess made of it
    assert times.epoch_ms_text_to_ms(99_999_999_999) == 99_999_999_999
    assert _old_magnitude_guess(99_999_999_999) == 99_999_999_999_000


def test_now_iso_reads_the_clock_it_is_given() -> None:
    assert times.now_iso(lambda: EPOCH_SECONDS) == "2026-01-02T03:04:09.123+00:00"


def _old_magnitude_guess(value: str | float) -> int:
    """bridge_api/stream.py's `_ms` for numbers, as it was (for the test above only)."""
    return int(float(value) * (1 if float(value) > 1e11 else 1000))
