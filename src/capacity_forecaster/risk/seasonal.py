"""Recurring period-end peaks (month-end, quarter-end, year-end): measure them per series and name a day by them."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from capacity_forecaster.etl.calendar import day_calendar
from capacity_forecaster.schema import DS, METRIC, SERVER_ID, VALUE, flag

PERIODS = ("year-end", "quarter-end", "month-end")
UPLIFT_COLUMNS = ("month_end_uplift", "quarter_end_uplift", "year_end_uplift")
_EPOCH = np.datetime64("1970-01-01", "D")
# The year-end season: business days of December against the same-length stretches either side
# (mid-October to mid-November and mid-January to mid-February), so a linear trend cancels out.
_DECEMBER = 12
_BASELINE_WINDOWS = ((10, 15, 11, 15), (1, 15, 2, 15))


def period_calendar(dates: pd.Series | pd.DatetimeIndex | np.ndarray, business_days: int) -> pd.DataFrame:
    """Period-end flags for every distinct day in ``dates``.

    A day is in a month-end window when it is one of the last ``business_days`` business days
    (NYSE calendar) of its month; a quarter-end window is a month-end window of March, June,
    September or December; the year-end season is every business day of December.

    Args:
        dates: days (any datetime-like values; duplicates and NaT are ignored).
        business_days: length of a period-end window in business days.

    Returns:
        Frame indexed by ``ds`` (datetime64[ns], sorted) with boolean columns is_business,
        month_end, quarter_end, year_end, year_end_baseline, the string column ``period``
        (``year-end``, ``quarter-end``, ``month-end`` or ``""``; the first that applies) and
        month_end_rank (business days left in the month, -1 on other days).
    """
    days = pd.DatetimeIndex(_naive_days(pd.Series(dates)).dropna().unique()).sort_values()
    if len(days) == 0:
        empty = pd.DataFrame(columns=["is_business", "month_end", "quarter_end", "year_end",
                                      "year_end_baseline", "period", "month_end_rank"],
                             index=pd.DatetimeIndex([], name=DS))
        return empty.astype({c: bool for c in empty.columns if c not in ("period", "month_end_rank")})
    first = days[0].to_datetime64().astype("datetime64[D]")
    last = days[-1].to_datetime64().astype("datetime64[D]")
    frame = _calendar_frame(int((first - _EPOCH).astype(np.int64)), int((last - first).astype(np.int64)) + 1,
                            business_days)
    return frame.loc[days]


@lru_cache(maxsize=32)
def _calendar_frame(first_day: int, n_days: int, business_days: int) -> pd.DataFrame:
    """Flags for a run of days (cached: the NYSE calendar is slow to build; callers only read it)."""
    cal = day_calendar(first_day, n_days)
    full = pd.DatetimeIndex(cal.dates.astype("datetime64[ns]"), name=DS)
    month_end = (cal.month_end_rank >= 0) & (cal.month_end_rank < business_days)
    quarter_end = month_end & cal.is_quarter_month
    month, day = full.month.to_numpy(), full.day.to_numpy()
    year_end = cal.is_business & (month == _DECEMBER)
    code = month * 100 + day
    baseline = np.zeros(len(full), dtype=bool)
    for m0, d0, m1, d1 in _BASELINE_WINDOWS:
        baseline |= (code >= m0 * 100 + d0) & (code <= m1 * 100 + d1)
    baseline &= cal.is_business
    period = np.select([year_end, quarter_end, month_end], list(PERIODS), default="")
    return pd.DataFrame(
        {"is_business": cal.is_business, "month_end": month_end, "quarter_end": quarter_end,
         "year_end": year_end, "year_end_baseline": baseline, "period": period,
         "month_end_rank": cal.month_end_rank},
        index=full,
    )


def _naive_days(values: pd.Series) -> pd.Series:
    """Calendar days (datetime64[ns], midnight); timestamps with a time zone are taken in UTC."""
    ds = pd.to_datetime(values)
    if getattr(ds.dt, "tz", None) is not None:
        ds = ds.dt.tz_convert("UTC").dt.tz_localize(None)
    return ds.dt.normalize()



def _ratio(num: pd.Series, den: pd.Series) -> pd.Series:
    out = num / den.where(den > 0) - 1.0
    return out.fillna(0.0)


# Month-ends (quarter-ends) a series must cover, each with other business days of its month, before
# its month-end (quarter-end) uplift counts; with fewer it is 0.
MIN_PERIODS = 2


def month_ends_covered(first: Any, last: Any, business_days: int) -> int:
    """Month-ends a history from ``first`` to ``last`` covers as ``period_uplifts`` counts them: months with
    business days both in and out of their month-end window (under ``MIN_PERIODS``, no month-end uplift)."""
    days = pd.date_range(pd.Timestamp(first).normalize(), pd.Timestamp(last).normalize(), freq="D")
    cal = period_calendar(days, business_days)
    business = cal[cal["is_business"].to_numpy(dtype=bool)]
    stamps = pd.DatetimeIndex(business.index)
    months = stamps.year * 12 + stamps.month
    kinds = business.groupby(months)["month_end"].agg(["any", "all"])
    return int((kinds["any"] & ~kinds["all"]).sum())


def period_uplifts(frame: pd.DataFrame, business_days: int, value: str = VALUE) -> pd.DataFrame:
    """Relative period-end uplift of every series: how much busier its period ends run.

    month_end_uplift compares month-end-window business days with the other business days of the
    same months; quarter_end_uplift compares quarter-end windows with the other business days of
    the quarter months; year_end_uplift compares December business days with mid-October to
    mid-November and mid-January to mid-February. A series that never covers a window gets 0, and so
    does one that covers fewer than ``MIN_PERIODS`` month-ends (quarter-ends) for those uplifts. The
    month-end (quarter-end) uplift is never above the lower median of the single months' (quarters')
    uplifts: a peak that recurs lifts most of them, a one-off (a switch that fell on one month-end) does not.

    Args:
        frame: long frame with server_id, metric, ds and ``value``.
        business_days: length of a period-end window in business days.
        value: the column to measure (``value`` for history, ``yhat`` for forecasts).

    Returns:
        One row per (server_id, metric): server_id, metric, month_end_uplift, quarter_end_uplift,
        year_end_uplift.
    """
    cal = period_calendar(frame[DS], business_days)
    ds = _naive_days(frame[DS])
    flags = cal.reindex(pd.DatetimeIndex(ds)).reset_index(drop=True)
    v = frame[value].to_numpy(dtype=float)
    ok = np.isfinite(v) & flags["is_business"].to_numpy(dtype=bool)
    month_key = (ds.dt.year * 12 + ds.dt.month).to_numpy()
    month_end = flags["month_end"].to_numpy(dtype=bool)
    quarter_end = flags["quarter_end"].to_numpy(dtype=bool)
    quarter_month = (ds.dt.month % 3 == 0).to_numpy()
    parts = pd.DataFrame({
        SERVER_ID: frame[SERVER_ID].to_numpy(), METRIC: frame[METRIC].to_numpy(), "month": month_key,
        "me_in": np.where(ok & month_end, v, np.nan), "me_out": np.where(ok & ~month_end, v, np.nan),
        "qe_in": np.where(ok & quarter_end, v, np.nan),
        "qe_out": np.where(ok & quarter_month & ~month_end, v, np.nan),
        "ye_in": np.where(ok & flags["year_end"].to_numpy(dtype=bool), v, np.nan),
        "ye_out": np.where(ok & flags["year_end_baseline"].to_numpy(dtype=bool), v, np.nan),
    })
    # Month-end comparisons are made within months that have both kinds of day, so that a trend
    # or a partial first/last month does not masquerade as an uplift.
    by_month = parts.groupby([SERVER_ID, METRIC, "month"], sort=False)[["me_in", "me_out", "qe_in", "qe_out"]].mean()
    both_me = by_month["me_in"].notna() & by_month["me_out"].notna()
    both_qe = by_month["qe_in"].notna() & by_month["qe_out"].notna()
    # A recurring peak recurs: one month-end (a month of fastStorage) or one quarter-end says nothing.
    both_me &= both_me.groupby(level=[0, 1], sort=False).transform("sum") >= MIN_PERIODS
    both_qe &= both_qe.groupby(level=[0, 1], sort=False).transform("sum") >= MIN_PERIODS
    monthly = pd.DataFrame({
        "me_in": by_month["me_in"].where(both_me), "me_out": by_month["me_out"].where(both_me),
        "qe_in": by_month["qe_in"].where(both_qe), "qe_out": by_month["qe_out"].where(both_qe),
    }).groupby(level=[0, 1], sort=False).mean()
    # ... and in most of them: the uplift is at most the lower median of the periods' own uplifts, so one
    # month whose end caught a switch from idle to saturated (helper-46's vendor export, Bitbrains VM 206) is
    # not a month-end batch; a real one lifts every month-end and keeps its pooled uplift.
    typical = pd.DataFrame({
        "me": _ratio(by_month["me_in"], by_month["me_out"]).where(both_me),
        "qe": _ratio(by_month["qe_in"], by_month["qe_out"]).where(both_qe),
    }).groupby(level=[0, 1], sort=False).quantile(0.5, interpolation="lower")
    yearly = parts.groupby([SERVER_ID, METRIC], sort=False)[["ye_in", "ye_out"]].mean()
    out = monthly.join(yearly, how="outer").join(typical, how="left")
    result = pd.DataFrame({
        "month_end_uplift": np.minimum(_ratio(out["me_in"], out["me_out"]), out["me"].fillna(0.0)),
        "quarter_end_uplift": np.minimum(_ratio(out["qe_in"], out["qe_out"]), out["qe"].fillna(0.0)),
        "year_end_uplift": _ratio(out["ye_in"], out["ye_out"]),
    })
    return result.reset_index()


def name_periods(
    days: pd.Series, uplifts: pd.DataFrame, business_days: int, min_uplift: float
) -> pd.Series:
    """Name the recurring period-end peak each day belongs to, if its series has that pattern.

    A day is named ``year-end`` / ``quarter-end`` / ``month-end`` only when it falls in that window
    AND its series' uplift for the pattern is at least ``min_uplift``: a growing server that simply
    peaks at the end of the horizon in December is not called a year-end peak.

    Args:
        days: one day per row (NaT allowed), aligned with ``uplifts``.
        uplifts: rows aligned with ``days`` holding month_end_uplift, quarter_end_uplift,
            year_end_uplift.
        business_days: length of a period-end window in business days.
        min_uplift: relative uplift that makes a pattern recurring.

    Returns:
        String Series aligned with ``days``: the period name or ``""``.
    """
    ds = _naive_days(days).reset_index(drop=True)
    cal = period_calendar(ds, business_days)
    flags = cal.reindex(pd.DatetimeIndex(ds)).reset_index(drop=True)
    up = uplifts.reset_index(drop=True)
    year = flag(flags["year_end"]).to_numpy() & (up["year_end_uplift"].to_numpy() >= min_uplift)
    quarter = flag(flags["quarter_end"]).to_numpy() & (
        np.maximum(up["quarter_end_uplift"].to_numpy(), up["month_end_uplift"].to_numpy()) >= min_uplift)
    month = flag(flags["month_end"]).to_numpy() & (up["month_end_uplift"].to_numpy() >= min_uplift)
    named = np.select([year, quarter, month], list(PERIODS), default="")
    return pd.Series(named, index=days.index, dtype=object)
