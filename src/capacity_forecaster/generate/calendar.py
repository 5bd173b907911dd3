"""A bank's business calendar: weekends, NYSE holidays, month/quarter-end business days, year-end season."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import holidays
import numpy as np

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


def nyse_holidays(first: np.datetime64, last: np.datetime64) -> np.ndarray:
    """NYSE holidays between two days inclusive, as a sorted ``datetime64[D]`` array."""
    years = range(int(str(first)[:4]), int(str(last)[:4]) + 1)
    days = np.array(sorted(holidays.financial_holidays("NYSE", years=years)), dtype="datetime64[D]")
    return days[(days >= first) & (days <= last)]


def build_calendar(start: np.datetime64, n_days: int) -> Calendar:
    """Calendar features for ``n_days`` consecutive days from ``start``.

    Month-end ranks are computed over whole months, so a window that ends mid-month does not
    mistake its last day for a month end.

    Args:
        start: first day (``datetime64[D]``).
        n_days: number of days.

    Returns:
        The Calendar.
    """
    start = start.astype("datetime64[D]")
    end = start + np.timedelta64(n_days - 1, "D")
    pad_start = start.astype("datetime64[M]").astype("datetime64[D]")
    pad_end = (end.astype("datetime64[M]") + 1).astype("datetime64[D]") - np.timedelta64(1, "D")
    dates = np.arange(pad_start, pad_end + np.timedelta64(1, "D"), dtype="datetime64[D]")

    # 1970-01-01 was a Thursday (weekday 3).
    weekday = ((dates.astype(np.int64) + 3) % 7).astype(np.int8)
    is_weekend = weekday >= 5
    is_holiday = np.isin(dates, nyse_holidays(pad_start, pad_end)) & ~is_weekend
    is_business = ~is_weekend & ~is_holiday
    busy = np.where(is_business, _WEEKDAY_LOAD[weekday], 0.0)

    months = dates.astype("datetime64[M]")
    bd_pos = np.flatnonzero(is_business)
    bd_months = months[bd_pos]
    last_in_month = np.searchsorted(bd_months, bd_months, side="right") - 1
    month_end_rank = np.full(len(dates), -1, dtype=np.int32)
    month_end_rank[bd_pos] = last_in_month - np.arange(len(bd_pos))
    month_end = np.zeros(len(dates))
    near_end = (month_end_rank >= 0) & (month_end_rank < len(_MONTH_END_WEIGHTS))
    month_end[near_end] = _MONTH_END_WEIGHTS[month_end_rank[near_end]]

    month_of_year = months.astype(np.int64) % 12 + 1
    is_quarter_month = month_of_year % 3 == 0

    day_of_year = (dates - dates.astype("datetime64[Y]").astype("datetime64[D]")).astype(np.int64)
    offset = (day_of_year - _YEAR_END_CENTRE_DOY + 182) % 365 - 182
    year_end = np.exp(-0.5 * (offset / _YEAR_END_SPREAD_DAYS) ** 2)

    lead = int((start - pad_start).astype(np.int64))
    keep = slice(lead, lead + n_days)
    return Calendar(
        dates=dates[keep],
        weekday=weekday[keep],
        is_holiday=is_holiday[keep],
        is_business=is_business[keep],
        busy=busy[keep],
        month_end_rank=month_end_rank[keep],
        month_end=month_end[keep],
        is_quarter_month=is_quarter_month[keep],
        year_end=year_end[keep],
    )
