"""Business calendar: observed window, NYSE holidays, month-end ranks and the year-end season."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from capacity_forecaster.etl.calendar import day_calendar, nyse_holidays
from capacity_forecaster.generate.calendar import build_calendar, observed_window


def _day(cal, text: str) -> int:  # noqa: ANN001 - Calendar
    return int(np.flatnonzero(cal.dates == np.datetime64(text))[0])


def test_observed_window_ends_on_the_end_date() -> None:
    start, days = observed_window(dt.date(2026, 6, 30), 3.0)
    assert days == 1096
    assert start == np.datetime64("2023-07-01")
    assert observed_window(dt.date(2026, 6, 30), 0.001) == (np.datetime64("2026-06-30"), 1)


def test_nyse_holidays_include_good_friday_and_thanksgiving() -> None:
    closed = set(nyse_holidays(np.datetime64("2025-01-01"), np.datetime64("2025-12-31")).tolist())
    assert {dt.date(2025, 4, 18), dt.date(2025, 11, 27), dt.date(2025, 12, 25), dt.date(2025, 7, 4)} <= closed
    assert dt.date(2025, 10, 13) not in closed  # Columbus Day: banks close, the exchange does not


def test_business_days_skip_weekends_and_holidays() -> None:
    cal = build_calendar(np.datetime64("2025-07-01"), 10)
    assert cal.weekday[_day(cal, "2025-07-05")] == 5
    assert not cal.is_business[_day(cal, "2025-07-05")]
    assert cal.is_holiday[_day(cal, "2025-07-04")] and not cal.is_business[_day(cal, "2025-07-04")]
    assert cal.busy[_day(cal, "2025-07-04")] == 0.0
    assert cal.is_business[_day(cal, "2025-07-07")] and cal.busy[_day(cal, "2025-07-07")] > 0.9


@pytest.mark.parametrize(
    ("day", "rank"),
    [
        ("2025-05-30", 0),
        ("2025-05-29", 1),
        ("2025-05-28", 2),
        ("2025-05-31", -1),
        ("2026-03-31", 0),
        ("2025-12-31", 0),
        ("2025-12-24", 4),
        ("2025-12-26", 3),
        ("2025-12-29", 2),
    ],
)
def test_month_end_rank_counts_business_days_to_the_month_end(day: str, rank: int) -> None:
    cal = build_calendar(np.datetime64("2025-01-01"), 500)
    assert cal.month_end_rank[_day(cal, day)] == rank
    assert cal.month_end[_day(cal, day)] == {0: 1.0, 1: 0.75, 2: 0.5}.get(rank, 0.0)


def test_a_window_ending_mid_month_has_no_false_month_end() -> None:
    cal = build_calendar(np.datetime64("2025-01-01"), 10)
    assert cal.month_end_rank[-1] > 10
    assert cal.month_end.sum() == 0.0


def test_quarter_months_and_year_end_season() -> None:
    cal = build_calendar(np.datetime64("2025-01-01"), 365)
    assert cal.is_quarter_month[_day(cal, "2025-09-15")] and not cal.is_quarter_month[_day(cal, "2025-10-15")]
    assert cal.year_end[_day(cal, "2025-12-15")] > 0.95
    assert cal.year_end[_day(cal, "2025-06-15")] < 0.01
    assert 0.2 < cal.year_end[_day(cal, "2025-11-20")] < 0.8


@pytest.mark.parametrize(("day", "rank"), [("2025-07-01", 0), ("2025-07-03", 2), ("2025-07-04", -1), ("2025-07-07", 3),
                                           ("2025-06-02", 0), ("2025-06-01", -1)])
def test_month_start_rank_counts_business_days_from_the_month_start(day: str, rank: int) -> None:
    cal = day_calendar(int((np.datetime64("2025-06-01") - np.datetime64("1970-01-01")).astype(int)), 60)
    assert cal.month_start_rank[_day(cal, day)] == rank


def test_a_window_starting_mid_month_has_no_false_month_start() -> None:
    cal = day_calendar(int((np.datetime64("2025-06-20") - np.datetime64("1970-01-01")).astype(int)), 5)
    assert cal.month_start_rank[0] > 10
