"""Business-calendar flags for a run of days: weekends, NYSE holidays, last business days of periods."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import holidays
import numpy as np

_EPOCH = np.datetime64("1970-01-01", "D")
# How many business days before a month end carry their own calendar effect (batch windows).
MONTH_END_RANKS = 3


@dataclass(frozen=True)
class DayCalendar:
    """Calendar flags per day (index = day offset from the first day).

    Attributes:
        dates: the days, ``datetime64[D]``.
        weekday: 0 = Monday ... 6 = Sunday.
        is_weekend: Saturday or Sunday.
        is_holiday: an NYSE holiday (US financial-market calendar), any weekday.
        is_business: neither weekend nor holiday.
        month_end_rank: business days left in the month after this one (0 = last business day),
            -1 on non-business days.
        month_start_rank: business days of the month before this one (0 = first business day), -1 on
            non-business days.
        is_month_end / is_quarter_end / is_year_end: the last business day of the month / quarter / year.
        is_quarter_month: the day lies in March, June, September or December.
    """

    dates: np.ndarray
    weekday: np.ndarray
    is_weekend: np.ndarray
    is_holiday: np.ndarray
    is_business: np.ndarray
    month_end_rank: np.ndarray
    month_start_rank: np.ndarray
    is_month_end: np.ndarray
    is_quarter_end: np.ndarray
    is_year_end: np.ndarray
    is_quarter_month: np.ndarray

    def day_class(self) -> np.ndarray:
        """Day type per day: 0-6 the weekday, 7 a holiday that falls on a weekday."""
        return np.where(self.is_holiday & ~self.is_weekend, 7, self.weekday).astype(np.int64)


def nyse_holidays(first: np.datetime64, last: np.datetime64) -> np.ndarray:
    """NYSE holidays between two days inclusive, as a sorted ``datetime64[D]`` array."""
    days = _nyse_days(int(str(first)[:4]), int(str(last)[:4]))
    return days[(days >= first) & (days <= last)]


@functools.lru_cache(maxsize=64)
def _nyse_days(first_year: int, last_year: int) -> np.ndarray:
    """NYSE holidays of whole years (read-only): the forecast models ask for the same years per work unit."""
    days = np.array(sorted(holidays.financial_holidays("NYSE", years=range(first_year, last_year + 1))),
                    dtype="datetime64[D]")
    days.flags.writeable = False
    return days


def day_calendar(first_day: int, n_days: int) -> DayCalendar:
    """Calendar flags for ``n_days`` consecutive days.

    Month-end and month-start ranks are computed over whole months, so a window that stops or starts
    mid-month does not take its last or first day for a month end or start.

    Args:
        first_day: the first day as days since 1970-01-01.
        n_days: number of days (>= 0).

    Returns:
        The DayCalendar.
    """
    start = _EPOCH + first_day
    end = start + max(n_days - 1, 0)
    pad_start = start.astype("datetime64[M]").astype("datetime64[D]")
    pad_end = (end.astype("datetime64[M]") + 1).astype("datetime64[D]") - 1
    dates = np.arange(pad_start, pad_end + 1, dtype="datetime64[D]")
    weekday = ((dates - _EPOCH).astype(np.int64) + 3) % 7
    is_weekend = weekday >= 5
    is_holiday = np.isin(dates, nyse_holidays(pad_start, pad_end))
    is_business = ~is_weekend & ~is_holiday
    months = dates.astype("datetime64[M]")
    bd_pos = np.flatnonzero(is_business)
    bd_months = months[bd_pos]
    last_in_month = np.searchsorted(bd_months, bd_months, side="right") - 1
    rank = np.full(len(dates), -1, dtype=np.int64)
    rank[bd_pos] = last_in_month - np.arange(len(bd_pos))
    start_rank = np.full(len(dates), -1, dtype=np.int64)
    start_rank[bd_pos] = np.arange(len(bd_pos)) - np.searchsorted(bd_months, bd_months, side="left")
    month_of_year = months.astype(np.int64) % 12 + 1
    is_month_end = rank == 0
    is_quarter_month = month_of_year % 3 == 0
    lead = int((start - pad_start).astype(np.int64))
    keep = slice(lead, lead + n_days)
    return DayCalendar(
        dates=dates[keep],
        weekday=weekday[keep],
        is_weekend=is_weekend[keep],
        is_holiday=is_holiday[keep],
        is_business=is_business[keep],
        month_end_rank=rank[keep],
        month_start_rank=start_rank[keep],
        is_month_end=is_month_end[keep],
        is_quarter_end=(is_month_end & is_quarter_month)[keep],
        is_year_end=(is_month_end & (month_of_year == 12))[keep],
        is_quarter_month=is_quarter_month[keep],
    )
