"""Seasonal analogue: last year's recurring period-end peaks scaled by year-over-year growth.

A second opinion on recurring peaks that does not depend on the forecasting model: a capacity
planner's "last year's quarter-end, plus this year's growth". For every forecast day that falls
in a window the series is known to peak in (month-end, quarter-end, year-end; see
``seasonal.name_periods``), the analogue is the value observed on the matching day one year (or
k years) earlier, times the growth ratio to the power k. Month- and quarter-end days are matched
by their business-day rank before the month end (the last business day of July 2026 with the
last business day of July 2025); year-end days by the same weekday 52 weeks earlier. The growth
ratio is the median of the last 91 days over the median of the same 91 days a year earlier,
clipped to [0.5, 2].

A history shorter than a year has no last year, but a month-end batch shows in a few months: a
series with a month-end pattern whose forecast month-end day has no year-ago match takes the median
of the same business-day rank in its last ``MONTHS_BACK`` observed months (at least
``MIN_MONTHS`` of them), without growth (``analogue_growth`` null). A bank's month-end risk run at
80 % on the last days of March, April and May is then expected at the end of June, where a model
trained on three month-ends forecasts the flat days around them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from capacity_forecaster.config import RiskConfig
from capacity_forecaster.risk.levels import thresholds
from capacity_forecaster.risk.seasonal import PERIODS, UPLIFT_COLUMNS, period_calendar
from capacity_forecaster.risk.whatif import growth_factor
from capacity_forecaster.schema import DS, METRIC, SERVER_ID, UNTRUSTED_FLAGS, VALUE, flagged

ANALOGUE_COLUMNS = (SERVER_ID, METRIC, "analogue_peak", "analogue_peak_ds", "analogue_breach_ds",
                    "analogue_days_above", "analogue_growth", "analogue_period")
ANALOGUE_DAY_COLUMNS = (SERVER_ID, METRIC, DS, "analogue", "growth", "period", "start")
_GROWTH_WINDOW = pd.Timedelta(days=91)
_YEAR = pd.Timedelta(days=364)
_GROWTH_CLIP = (0.5, 2.0)
_MIN_WINDOW_VALUES = 20
# Months of a history shorter than a year whose month-end days stand in for a coming month-end (their median).
MONTHS_BACK = 3
MIN_MONTHS = 2
_KEYS = [SERVER_ID, METRIC]


def empty_days() -> pd.DataFrame:
    """``analogue_days`` without rows, with the column types of a filled one."""
    return pd.DataFrame({
        SERVER_ID: pd.Series(dtype=object), METRIC: pd.Series(dtype=object), DS: pd.Series(dtype="datetime64[ns]"),
        "analogue": pd.Series(dtype=float), "growth": pd.Series(dtype=float), "period": pd.Series(dtype=object),
        "start": pd.Series(dtype="datetime64[ns]"),
    })


def empty_analogue() -> pd.DataFrame:
    """An analogue frame without rows, with the column types of a filled one."""
    return pd.DataFrame({
        SERVER_ID: pd.Series(dtype=object), METRIC: pd.Series(dtype=object),
        "analogue_peak": pd.Series(dtype=float), "analogue_peak_ds": pd.Series(dtype="datetime64[ns]"),
        "analogue_breach_ds": pd.Series(dtype="datetime64[ns]"), "analogue_days_above": pd.Series(dtype=np.int64),
        "analogue_growth": pd.Series(dtype=float), "analogue_period": pd.Series(dtype=object),
    })


def _usable(metrics: pd.DataFrame) -> pd.DataFrame:
    ok = metrics[VALUE].notna() & ~flagged(metrics, UNTRUSTED_FLAGS)
    out = metrics.loc[ok, [SERVER_ID, METRIC, DS, VALUE]].copy()
    out[DS] = pd.to_datetime(out[DS]).dt.normalize()
    return out


def growth_ratio(history: pd.DataFrame) -> pd.Series:
    """Year-over-year growth per series: median of the last 91 days over the same days a year earlier.

    Args:
        history: usable history rows (server_id, metric, ds, value).

    Returns:
        Series indexed by (server_id, metric), clipped to [0.5, 2]; missing where either window has
        fewer than 20 values.
    """
    last = history.groupby(_KEYS)[DS].transform("max")
    age = last - history[DS]
    recent = history[age < _GROWTH_WINDOW].groupby(_KEYS)[VALUE].agg(["median", "size"])
    prior = history[(age >= _YEAR) & (age < _YEAR + _GROWTH_WINDOW)].groupby(_KEYS)[VALUE].agg(["median", "size"])
    both = recent.join(prior, lsuffix="_recent", rsuffix="_prior", how="inner")
    enough = (both["size_recent"] >= _MIN_WINDOW_VALUES) & (both["size_prior"] >= _MIN_WINDOW_VALUES)
    ratio = both["median_recent"] / both["median_prior"].where(both["median_prior"] > 0)
    return ratio.where(enough).clip(*_GROWTH_CLIP).dropna().rename("growth")


def _recent_months(days: pd.DataFrame, hist: pd.DataFrame, matched: pd.DataFrame) -> pd.DataFrame:
    """Month-end forecast days without a year-ago match: the median of the same business-day rank over the
    series' last ``MONTHS_BACK`` observed months (at least ``MIN_MONTHS``), growth unknown (NaN)."""
    if days.empty:
        return pd.DataFrame()
    done = pd.MultiIndex.from_frame(matched[[*_KEYS, DS]]) if len(matched) else None
    if done is not None:
        days = days[~pd.MultiIndex.from_frame(days[[*_KEYS, DS]]).isin(done)]
    ranks = hist.loc[hist["rank"] >= 0, [*_KEYS, "source_month", "rank", VALUE]]
    last = ranks.groupby(_KEYS)["source_month"].max().rename("last_month").reset_index()
    ranks = ranks.merge(last, on=_KEYS)
    ranks = ranks[ranks["source_month"] > ranks["last_month"] - MONTHS_BACK]
    typical = ranks.groupby([*_KEYS, "rank"])[VALUE].agg(["median", "size"]).reset_index()
    typical = typical[typical["size"] >= MIN_MONTHS]
    out = days.merge(typical[[*_KEYS, "rank", "median"]], on=[*_KEYS, "rank"], how="inner")
    # A month-end pattern, whatever the day's own period name (June's month-end is a quarter-end).
    return out.assign(analogue=out["median"], growth=np.nan, period="month-end").drop(columns="median")


def seasonal_analogue(
    metrics: pd.DataFrame, forecasts: pd.DataFrame, uplifts: pd.DataFrame, cfg: RiskConfig
) -> pd.DataFrame:
    """Last year's recurring peaks, grown (under a year of history: the month-end peaks of the last months), over
    the forecast horizon of every series that has them.

    ``summarise_analogue`` of ``analogue_days``; see there.

    Returns:
        ``ANALOGUE_COLUMNS``, one row per series with at least one analogue day.
    """
    return summarise_analogue(analogue_days(metrics, forecasts, uplifts, cfg), cfg)


def analogue_days(
    metrics: pd.DataFrame, forecasts: pd.DataFrame, uplifts: pd.DataFrame, cfg: RiskConfig
) -> pd.DataFrame:
    """The analogue of every forecast day in a window its series recurrently peaks in.

    Args:
        metrics: processed metrics (flagged, imputed and missing values are not used).
        forecasts: server_id, metric, ds (the horizon to cover).
        uplifts: ``seasonal.period_uplifts`` of the history.
        cfg: risk settings (thresholds, period-end window, minimum uplift).

    Returns:
        ``ANALOGUE_DAY_COLUMNS``: server_id, metric, ds, analogue (the value expected that day), growth
        (the year-over-year ratio applied; NaN for the month-by-month analogue), period (the day's
        period name), start (the series' first forecast day).
    """
    empty = empty_days()
    lift = cfg.seasonal_min_uplift
    patterned = uplifts.loc[uplifts[list(UPLIFT_COLUMNS)].max(axis=1) >= lift, _KEYS]
    if patterned.empty or forecasts.empty:
        return empty
    keys = pd.MultiIndex.from_frame(patterned)
    history = _usable(metrics[pd.MultiIndex.from_frame(metrics[_KEYS]).isin(keys)])
    if history.empty:
        return empty
    growth = growth_ratio(history)
    days = forecasts.loc[pd.MultiIndex.from_frame(forecasts[_KEYS]).isin(keys), _KEYS + [DS]].copy()
    days[DS] = pd.to_datetime(days[DS]).dt.normalize()
    days["start"] = days.groupby(_KEYS)[DS].transform("min")  # the horizon's first day, for a growth ramp
    # Without a year-ago window growth is unknown (NaN): only the month-by-month analogue applies there.
    days = days.merge(growth.reset_index(), on=_KEYS, how="left").merge(uplifts, on=_KEYS, how="left")
    days[list(UPLIFT_COLUMNS)] = days[list(UPLIFT_COLUMNS)].fillna(0.0)
    last = history.groupby(_KEYS)[DS].max().rename("last_observed").reset_index()
    days = days.merge(last, on=_KEYS)
    flags = period_calendar(days[DS], cfg.period_end_business_days).reindex(pd.DatetimeIndex(days[DS]))
    flags = flags.reset_index(drop=True)
    month_pattern = days["month_end_uplift"].to_numpy() >= lift
    quarter_pattern = np.maximum(days["quarter_end_uplift"].to_numpy(), days["month_end_uplift"].to_numpy()) >= lift
    by_rank = ((flags["month_end"].to_numpy(dtype=bool) & month_pattern)
               | (flags["quarter_end"].to_numpy(dtype=bool) & quarter_pattern))
    by_week = ~by_rank & flags["year_end"].to_numpy(dtype=bool) & (days["year_end_uplift"].to_numpy() >= lift)
    period = np.select([by_week, flags["quarter_end"].to_numpy(dtype=bool) & quarter_pattern, by_rank],
                       list(PERIODS), default="")
    days = days.assign(period=period, rank=flags["month_end_rank"].to_numpy())[by_rank | by_week]
    if days.empty:
        return empty
    by_week = days["period"].eq(PERIODS[0]).to_numpy()

    # Years back: the nearest year whose matching day is already observed.
    ahead = (days[DS] - days["last_observed"]).dt.days.to_numpy()
    years_week = np.maximum(1, np.ceil(ahead / _YEAR.days)).astype(np.int64)
    month_index = days[DS].dt.year * 12 + days[DS].dt.month - 1
    last_month = days["last_observed"].dt.year * 12 + days["last_observed"].dt.month - 1
    years_rank = np.maximum(1, np.ceil((month_index - last_month).to_numpy() / 12)).astype(np.int64)
    years = np.where(by_week, years_week, years_rank)
    days = days.assign(years=years, source_ds=days[DS] - pd.to_timedelta(years * _YEAR.days, unit="D"),
                       source_month=month_index.to_numpy() - 12 * years)

    hist_flags = period_calendar(history[DS], cfg.period_end_business_days).reindex(pd.DatetimeIndex(history[DS]))
    hist = history.assign(rank=hist_flags["month_end_rank"].to_numpy(),
                          source_month=(history[DS].dt.year * 12 + history[DS].dt.month - 1).to_numpy())
    yearly = days[days["growth"].notna()]
    weekly = yearly[by_week[days["growth"].notna().to_numpy()]].merge(
        hist[_KEYS + [DS, VALUE]].rename(columns={DS: "source_ds"}), on=[*_KEYS, "source_ds"], how="inner")
    ranked = yearly[~by_week[days["growth"].notna().to_numpy()]].merge(
        hist.loc[hist["rank"] >= 0, [*_KEYS, "source_month", "rank", VALUE]],
        on=[*_KEYS, "source_month", "rank"], how="inner")
    matched = pd.concat([weekly, ranked], ignore_index=True)
    matched["analogue"] = matched[VALUE] * matched["growth"] ** matched["years"]
    monthly = _recent_months(days[~by_week & (days["month_end_uplift"] >= lift).to_numpy()], hist, matched)
    matched = pd.concat([m for m in (matched, monthly) if len(m)], ignore_index=True) if len(monthly) else matched
    if matched.empty:
        return empty_days()
    return matched.sort_values([*_KEYS, DS], kind="stable")[list(ANALOGUE_DAY_COLUMNS)].reset_index(drop=True)


def summarise_analogue(daily: pd.DataFrame, cfg: RiskConfig, growth: float | None = None) -> pd.DataFrame:
    """Each series' analogue peak and breach days from its analogue days, grown like the forecasts of a what-if.

    Args:
        daily: ``analogue_days``.
        cfg: risk settings (thresholds; ``growth_ramp``).
        growth: a what-if's growth in percent (``whatif.apply_growth``: ramped from the horizon's first
            day, or a step); None or 0: as observed.

    Returns:
        ``ANALOGUE_COLUMNS``, one row per series with analogue days.
    """
    if daily.empty:
        return empty_analogue()
    matched = daily.copy()
    if growth:
        factor = growth_factor(matched[DS], matched["start"], growth, ramp=cfg.growth_ramp)
        matched["analogue"] = np.clip(matched["analogue"].to_numpy(float) * (1.0 + factor), 0.0, 100.0)
    matched["threshold"] = thresholds(matched[METRIC], cfg)
    peak_rows = matched.loc[matched.groupby(_KEYS)["analogue"].idxmax()].set_index(_KEYS)
    above = matched[matched["analogue"] > matched["threshold"]]
    out = pd.DataFrame({
        "analogue_peak": peak_rows["analogue"],
        "analogue_peak_ds": peak_rows[DS],
        "analogue_breach_ds": above.groupby(_KEYS)[DS].min().reindex(peak_rows.index),
        "analogue_days_above": above.groupby(_KEYS).size().reindex(peak_rows.index).fillna(0).astype(np.int64),
        "analogue_growth": peak_rows["growth"],
        "analogue_period": peak_rows["period"],
    })
    return out.reset_index()[list(ANALOGUE_COLUMNS)]
