"""Calendar regressors shared by the models: weekday, NYSE holidays, month/quarter/year ends, Fourier terms.

A bank's load follows its business calendar: weekends and exchange holidays are quiet, the last
business days of a month run batch jobs (more so at quarter ends), and the year end has its own
season. The day-level flags come from :mod:`capacity_forecaster.etl.calendar` (NYSE holidays via
``holidays.financial_holidays("NYSE")``) so that ETL and forecasting agree on what a month end is;
this module maps them onto arbitrary (also hourly) timestamp arrays and adds Fourier terms.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from capacity_forecaster.etl.calendar import MONTH_END_RANKS, day_calendar

DAYS_PER_YEAR = 365.25
_EPOCH_DAY = np.datetime64("1970-01-01", "D")
# Names of the columns of ``event_regressors``, in order.
EVENT_NAMES = (
    *(f"month_end_{rank}" for rank in range(MONTH_END_RANKS)),
    *(f"quarter_end_{rank}" for rank in range(MONTH_END_RANKS)),
    "year_end",
    "holiday",
)


@dataclass(frozen=True)
class CalendarFeatures:
    """Calendar flags for an array of timestamps (every attribute has the timestamps' shape).

    Attributes:
        weekday: 0 = Monday ... 6 = Sunday.
        hour: hour of day (0 for daily timestamps).
        day_of_year: 0-based day within the year.
        is_holiday: an NYSE holiday falling on a weekday (the business day that goes quiet).
        is_business: neither weekend nor holiday.
        month_end_rank: business days left in the month after this day (0 = last business day), -1 on
            non-business days.
        is_quarter_month: March, June, September or December.
        is_year_end: the last business day of the year.
    """

    weekday: np.ndarray
    hour: np.ndarray
    day_of_year: np.ndarray
    is_holiday: np.ndarray
    is_business: np.ndarray
    month_end_rank: np.ndarray
    is_quarter_month: np.ndarray
    is_year_end: np.ndarray


def calendar_features(timestamps: np.ndarray) -> CalendarFeatures:
    """Calendar flags for timestamps of any shape (daily dates or hourly timestamps).

    Args:
        timestamps: ``datetime64`` array (any unit, any shape, no NaT).

    Returns:
        CalendarFeatures with arrays of the same shape.
    """
    ts = np.asarray(timestamps, dtype="datetime64[ns]")
    days = ts.astype("datetime64[D]")
    if days.size == 0:
        empty = np.zeros(ts.shape, dtype=np.int64)
        flag = np.zeros(ts.shape, dtype=bool)
        return CalendarFeatures(empty, empty, empty, flag, flag, empty - 1, flag, flag)
    first = days.min()
    n_days = int((days.max() - first).astype(np.int64)) + 1
    cal = day_calendar(int((first - _EPOCH_DAY).astype(np.int64)), n_days)
    idx = (days - first).astype(np.int64)
    year_start = days.astype("datetime64[Y]").astype("datetime64[D]")
    hour = ((ts - days.astype("datetime64[ns]")) // np.timedelta64(1, "h")).astype(np.int64)
    return CalendarFeatures(
        weekday=cal.weekday[idx].astype(np.int64),
        hour=hour,
        day_of_year=(days - year_start).astype(np.int64),
        is_holiday=(cal.is_holiday & ~cal.is_weekend)[idx],
        is_business=cal.is_business[idx],
        month_end_rank=cal.month_end_rank[idx].astype(np.int64),
        is_quarter_month=cal.is_quarter_month[idx],
        is_year_end=cal.is_year_end[idx],
    )


def event_regressors(cal: CalendarFeatures) -> np.ndarray:
    """0/1 indicators of the bank's calendar events, columns ``EVENT_NAMES``.

    Month-end ranks 0..2 (last, second-last, third-last business day), the same ranks again in
    quarter months (quarter-end batches are heavier), the last business day of the year, and a
    weekday NYSE holiday.

    Returns:
        float64 array of shape ``cal.weekday.shape + (len(EVENT_NAMES),)``.
    """
    rank = cal.month_end_rank[..., None]
    ranks = np.arange(MONTH_END_RANKS)
    month_end = rank == ranks
    quarter_end = month_end & cal.is_quarter_month[..., None]
    return np.concatenate(
        [month_end, quarter_end, cal.is_year_end[..., None], cal.is_holiday[..., None]], axis=-1
    ).astype(np.float64)


def weekday_dummies(cal: CalendarFeatures) -> np.ndarray:
    """One-hot weekday without Monday (the intercept carries it), shape ``(..., 6)``."""
    return (cal.weekday[..., None] == np.arange(1, 7)).astype(np.float64)


def hour_dummies(cal: CalendarFeatures) -> np.ndarray:
    """One-hot hour of day without hour 0, shape ``(..., 23)``."""
    return (cal.hour[..., None] == np.arange(1, 24)).astype(np.float64)


def fourier_terms(timestamps: np.ndarray, period_days: float, order: int) -> np.ndarray:
    """Sine/cosine pairs of a period, phased on absolute time so every series and cutoff agrees.

    Args:
        timestamps: ``datetime64`` array of any shape.
        period_days: the period in days (365.25 for the year, 7 for the week).
        order: number of harmonics (0 gives an empty last axis).

    Returns:
        float64 array ``(..., 2 * order)``: sin(2 pi k t / P), cos(2 pi k t / P) for k = 1..order.
    """
    ts = np.asarray(timestamps, dtype="datetime64[ns]")
    t_days = ts.astype(np.int64) / 86_400e9
    k = np.arange(1, order + 1)
    angle = 2.0 * np.pi * t_days[..., None] * k / period_days
    return np.concatenate([np.sin(angle), np.cos(angle)], axis=-1)
