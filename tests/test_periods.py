"""Budget periods on their own: where each starts and when it resets, in UTC."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone

import pytest

from gateway.limits.periods import ADJECTIVE, EPOCH, period_end, period_start


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("now", "start", "end"),
    [
        (utc(2026, 11, 29, 21, 5, 7, 123), utc(2026, 11, 29), utc(2026, 11, 30)),
        (utc(2026, 12, 31, 23, 59, 59), utc(2026, 12, 31), utc(2027, 1, 1)),
        (utc(2028, 2, 28, 0, 0, 0), utc(2028, 2, 28), utc(2028, 2, 29)),
    ],
)
def test_day_runs_midnight_to_midnight(now, start, end):
    assert period_start("day", now) == start and period_end("day", now) == end


@pytest.mark.parametrize(
    ("now", "monday"),
    [
        (utc(2026, 11, 23, 0, 0, 0), utc(2026, 11, 23)),  # a Monday at midnight starts its own week
        (utc(2026, 11, 25, 12, 0, 0), utc(2026, 11, 23)),  # Wednesday
        (utc(2026, 11, 29, 23, 59, 59), utc(2026, 11, 23)),  # Sunday still belongs to it
        (utc(2026, 12, 30, 8, 0, 0), utc(2026, 12, 28)),  # across a month and a year end
    ],
)
def test_week_starts_on_monday_and_resets_the_next_monday(now, monday):
    assert period_start("week", now) == monday and monday.weekday() == 0
    assert period_end("week", now) == monday + timedelta(days=7)


@pytest.mark.parametrize(
    ("now", "start", "end"),
    [
        (utc(2026, 11, 29, 21, 0, 0), utc(2026, 11, 1), utc(2026, 12, 1)),
        (utc(2026, 12, 1, 0, 0, 0), utc(2026, 12, 1), utc(2027, 1, 1)),  # December rolls the year
        (utc(2027, 1, 31, 23, 0, 0), utc(2027, 1, 1), utc(2027, 2, 1)),
        (utc(2028, 2, 29, 5, 0, 0), utc(2028, 2, 1), utc(2028, 3, 1)),
    ],
)
def test_month_runs_from_the_first_to_the_first(now, start, end):
    assert period_start("month", now) == start and period_end("month", now) == end


def test_periods_are_taken_in_utc_whatever_the_clock_zone():
    tokyo = timezone(timedelta(hours=9))
    now = datetime(2026, 12, 1, 3, 0, 0, tzinfo=tokyo)  # still 30 November in UTC
    assert period_start("day", now) == utc(2026, 11, 30)
    assert period_start("month", now) == utc(2026, 11, 1) and period_end("month", now) == utc(2026, 12, 1)
    assert period_start("week", now) == utc(2026, 11, 30)  # Monday 30 November (UTC)


def test_periods_do_not_follow_the_machines_local_zone(monkeypatch):
    monkeypatch.setenv("TZ", "JST-9")  # POSIX: nine hours east of UTC, no tz database needed
    time.tzset()
    try:
        now = utc(2026, 11, 30, 20, 0, 0)  # already 1 December in that zone
        assert period_start("day", now) == utc(2026, 11, 30) and period_start("month", now) == utc(
            2026, 11, 1
        )
    finally:
        monkeypatch.undo()
        time.tzset()


def test_total_starts_at_the_epoch_and_never_resets():
    assert period_start("total", utc(2026, 6, 1)) == EPOCH == utc(1970, 1, 1)
    assert period_end("total", utc(2026, 6, 1)) is None
    assert ADJECTIVE == {"day": "daily", "week": "weekly", "month": "monthly", "total": "total"}
