"""A bank's business calendar: weekends, NYSE holidays, month/quarter-end business days, year-end season."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from capacity_forecaster.etl.calendar import day_calendar

# Relative load of a business day by weekday (Mon..Fri): Monday catch-up, quiet Friday.
_WEEKDAY_LOAD = np.array([1.04, 1.02, 1.0, 0.99, 0.95, 0.0, 0.0])
# Weight of the month-end batch uplift on the last, second-last and third-last business day.
_MONTH_END_WEIGHTS = np.array([1.0, 0.75, 0.5])
# Year-end season: a bump centred on 15 December (day of year 349) with a spread of about three weeks.
_YEAR_END_CENTRE_DOY = 348
_YEAR_END_SPREAD_DAYS = 22.0


@dataclass(frozen=True)
class Calendar:
    """Day-level calendar features over a contiguous run of dates (index = day offset).

    Attributes:
        dates: the days, ``datetime64[D]``.
        weekday: 0 = Monday ... 6 = Sunday.
        is_holiday: NYSE holiday (exchange closed) on a weekday.
        is_business: a weekday that is not a holiday.
        busy: relative business load: about 1 on business days (weekday-shaped), 0 otherwise.
        month_end_rank: business days left in the month after this one (0 = last business day);
            -1 on non-business days.
        month_end: batch weight on the last three business days of a month (1, 0.75, 0.5), else 0.
        is_quarter_month: the day lies in March, June, September or December.
        year_end: smooth year-end season in [0, 1], peaking mid-December.
    """

    dates: np.ndarray
    weekday: np.ndarray
    is_holiday: np.ndarray
    is_business: np.ndarray
    busy: np.ndarray
    month_end_rank: np.ndarray
    month_end: np.ndarray
    is_quarter_month: np.ndarray
    year_end: np.ndarray

    def __len__(self) -> int:
        return len(self.dates)


def observed_window(end_date: dt.date, years: float) -> tuple[np.datetime64, int]:
    """First observed day and number of observed days: ``round(years * 365.25)`` days ending at end_date.

    Args:
        end_date: last observed day (inclusive).
        years: length of the observed history in years.

    Returns:
        (first day as ``datetime64[D]``, number of days, at least 1).
    """
    n_days = max(1, round(years * 365.25))
    end = np.datetime64(end_date, "D")
    return end - np.timedelta64(n_days - 1, "D"), n_days


def build_calendar(start: np.datetime64, n_days: int) -> Calendar:
    """Calendar features for ``n_days`` consecutive days from ``start``.

    The business-day flags come from ``etl.calendar.day_calendar`` (the same calendar the ETL and the
    forecasters use); this adds the load shapes the generator draws with.

    Args:
        start: first day (``datetime64[D]``).
        n_days: number of days.

    Returns:
        The Calendar.
    """
    days = day_calendar(int(start.astype("datetime64[D]").astype(np.int64)), n_days)
    # A holiday on a weekend changes nothing for the load: only weekday holidays count here.
    is_holiday = days.is_holiday & ~days.is_weekend
    weekday = days.weekday.astype(np.int8)
    busy = np.where(days.is_business, _WEEKDAY_LOAD[weekday], 0.0)
    month_end_rank = days.month_end_rank.astype(np.int32)
    month_end = np.zeros(n_days)
    near_end = (month_end_rank >= 0) & (month_end_rank < len(_MONTH_END_WEIGHTS))
    month_end[near_end] = _MONTH_END_WEIGHTS[month_end_rank[near_end]]
    dates = days.dates
    day_of_year = (dates - dates.astype("datetime64[Y]").astype("datetime64[D]")).astype(np.int64)
    offset = (day_of_year - _YEAR_END_CENTRE_DOY + 182) % 365 - 182
    year_end = np.exp(-0.5 * (offset / _YEAR_END_SPREAD_DAYS) ** 2)
    return Calendar(
        dates=dates,
        weekday=weekday,
        is_holiday=is_holiday,
        is_business=days.is_business,
        busy=busy,
        month_end_rank=month_end_rank,
        month_end=month_end,
        is_quarter_month=days.is_quarter_month,
        year_end=year_end,
    )
