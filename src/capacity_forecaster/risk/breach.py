"""Breach risk per series: first crossing of the threshold, peak, breach probability and the risk level."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import pandas as pd

from capacity_forecaster.config import RiskConfig
from capacity_forecaster.risk.analogue import empty_analogue
from capacity_forecaster.risk.current import RAW_LAST, observed_mask
from capacity_forecaster.risk.levels import RiskLevel, Status, labels_from_codes, thresholds
from capacity_forecaster.risk.probability import count_probability, cumulative_probability, exceedance_scores, padded
from capacity_forecaster.risk.seasonal import UPLIFT_COLUMNS, name_periods
from capacity_forecaster.schema import (
    DS,
    FORECAST_COLUMNS,
    METRIC,
    SERIES_KEY,
    SERVER_ID,
    VALUE,
    flag,
    require_columns,
)

logger = logging.getLogger(__name__)

HISTORY_COLUMNS = (SERVER_ID, METRIC, "first_observed", "last_observed", "history_days")
BREACH_EXTRA_COLUMNS = (
    "status", "threshold", "breach_upper_ds", "days_to_upper_breach", "likely_breach_ds", "peak_upper",
    "horizon_days", "history_days", "first_observed", "last_observed", "seasonal_peak", "analogue_peak",
    "analogue_breach_ds", "analogue_days_above", "sustained_breach_probability", "days_over_recent",
    "days_over_30d", "days_over_90d", "last_over_ds", "reason", "forecast_breach_ds", "recent_gap_days",
    "recent_gap_resumed", "days_after_gap", "days_saturated_recent",
)
# The forecasts' flag of days beyond the leads the forecast stage backtested (``forecast.stage.EXTRAPOLATION``).
EXTRAPOLATION = "is_extrapolation"
# current_state columns carried into server_risk (the rest is already there from the history).
_CURRENT_CARRIED = ("days_over_recent", "days_over_30d", "days_over_90d", "last_over_ds", "already_breaching",
                    "days_saturated_recent", "recent_gap_days", "recent_gap_resumed", "days_after_gap")
_DAY = pd.Timedelta(days=1)


# The ETL's record of series it quarantined whole (``series_diagnostics`` rows with ``n_obs`` 0), or at their end
# (with ``n_obs`` and ``raw_last_ds`` where the lake has them: the raw data go on after the last processed day).
LOST_COLUMNS = (SERVER_ID, METRIC, "n_quarantined", "quarantine_reason")
CUT_COLUMNS = ("n_obs", "raw_last_ds")


def with_lost_series(server_risk: pd.DataFrame, lost: pd.DataFrame, cfg: RiskConfig) -> pd.DataFrame:
    """``server_risk`` plus a ``no_data`` row for every series the ETL quarantined whole and nothing else assessed,
    and ``raw_last_observed`` for the series whose last days it quarantined.

    A series quarantined whole has no processed day and no forecast, so the assessment never saw it; without a row
    it would vanish from every table, and its server would read "no metrics were delivered". A series whose last
    days were quarantined ends before its raw data: ``current.mark_stale`` says so instead of "no data since".

    Args:
        server_risk: the assessed series (``assess_breaches``).
        lost: ``LOST_COLUMNS`` rows, with ``CUT_COLUMNS`` where known (a row without ``n_obs`` is a lost series).
        cfg: risk settings (thresholds).

    Returns:
        ``server_risk`` with the rows added (level null, status ``no_data``, the reason naming the
        quarantined days and their most common reason), sorted by series, and ``raw_last_observed`` (NaT
        unless the series' raw data end after its last observed day).
    """
    keys = [SERVER_ID, METRIC]
    out = server_risk.copy()
    if RAW_LAST not in out.columns:  # (a what-if's assessment has it already from the base's lost series)
        out[RAW_LAST] = pd.Series(pd.NaT, index=out.index, dtype="datetime64[ns]")
    if lost.empty:
        return out
    whole = lost["n_obs"].fillna(0).to_numpy() == 0 if "n_obs" in lost.columns else np.ones(len(lost), dtype=bool)
    if "raw_last_ds" in lost.columns and (~whole).any():
        cut = lost.loc[~whole, [*keys, "raw_last_ds"]].astype({SERVER_ID: object, METRIC: object})
        found = pd.to_datetime(out[keys].astype(object).merge(cut, on=keys, how="left")["raw_last_ds"]).to_numpy()
        later = found > pd.to_datetime(out["last_observed"]).to_numpy()
        out.loc[later, RAW_LAST] = found[later]
    known = pd.MultiIndex.from_frame(out[keys].astype(object))
    new = lost[whole & ~pd.MultiIndex.from_frame(lost[keys].astype(object)).isin(known)]
    if new.empty:
        return out
    days = new["n_quarantined"].astype(np.int64)
    # A series the ingest quarantined whole counts samples, not days (``diagnostics.IngestLosses``).
    at_ingest = (new["lost_at_ingest"].fillna(False).astype(bool).to_numpy() if "lost_at_ingest" in new.columns
                 else np.zeros(len(new), dtype=bool))
    unit = pd.Series(np.where(at_ingest, "sample", "day"), index=new.index, dtype=object)
    where = pd.Series(np.where(at_ingest, "at ingest", "by the ETL"), index=new.index, dtype=object)
    many = "all " + days.map("{:,}".format) + " of its " + unit + "s were"
    counted = ("its one " + unit + " was").where(days == 1, many)
    quarantined = (new[METRIC].astype(str) + ": " + counted + " quarantined " + where + " (mostly "
                   + new["quarantine_reason"].astype(str) + "): nothing to assess; its rows are in the quarantine "
                   "table")
    # Nothing quarantined and nothing observed: every raw day of it is empty (helper-56: "all 0 of its days were
    # quarantined (mostly )").
    empty = new[METRIC].astype(str) + ": no observed value (every raw day is empty): nothing to assess"
    given = {
        SERVER_ID: new[SERVER_ID].to_numpy(), METRIC: new[METRIC].to_numpy(), "status": Status.NO_DATA.value,
        "threshold": thresholds(new[METRIC], cfg).to_numpy(),
        "reason": quarantined.where(days.to_numpy() > 0, empty).to_numpy(),
    }
    # Every other column empty in the assessed rows' type; counts (plain integer columns) are 0: nothing was observed.
    rows = pd.DataFrame({
        column: given[column] if column in given else
        np.zeros(len(new), dtype=np.int64) if isinstance(dtype, np.dtype) and dtype.kind in "iu" else
        pd.Series([None] * len(new), dtype=object if pd.api.types.is_bool_dtype(dtype) else dtype)
        for column, dtype in out.dtypes.items()})
    out = pd.concat([out, rows], ignore_index=True)
    return out.sort_values(keys, kind="stable").reset_index(drop=True)


def history_summary(metrics: pd.DataFrame) -> pd.DataFrame:
    """How much usable history every series has.

    A day counts as observed when its value is present and was not imputed by the ETL stage
    (``is_imputed``, when the column exists).

    Args:
        metrics: long history frame: server_id, ds, metric, value (+ is_imputed).

    Returns:
        One row per (server_id, metric): server_id, metric, first_observed, last_observed,
        history_days.
    """
    require_columns(metrics, (SERVER_ID, DS, METRIC, VALUE), "metrics")
    frame = metrics.loc[observed_mask(metrics), [SERVER_ID, METRIC, DS]]
    out = frame.groupby([SERVER_ID, METRIC], sort=True)[DS].agg(["min", "max", "size"])
    out.columns = ["first_observed", "last_observed", "history_days"]
    return out.reset_index()


def _untested(forecasts: pd.DataFrame, group: np.ndarray, n_series: int) -> np.ndarray:
    """Per series (``group`` codes of the sorted ``forecasts``): is its first forecast day extrapolation (the forecast
    stage backtested none of its leads)? All False without ``is_extrapolation``."""
    if EXTRAPOLATION not in forecasts.columns or not len(forecasts):
        return np.zeros(n_series, dtype=bool)
    first = np.r_[True, group[1:] != group[:-1]]
    out = np.zeros(n_series, dtype=bool)
    # A row without the flag (a what-if's combined host) is no extrapolation.
    out[group[first]] = forecasts[EXTRAPOLATION].eq(True).to_numpy()[first]
    return out


def _level_codes(prob: np.ndarray, likely_days: np.ndarray, cfg: RiskConfig) -> np.ndarray:
    """Vectorised risk rule: likely within critical_days / high_days, else a sustained breach probable."""
    with np.errstate(invalid="ignore"):
        return np.select(
            [likely_days <= cfg.critical_days, likely_days <= cfg.high_days, prob >= cfg.medium_probability],
            [RiskLevel.CRITICAL.value, RiskLevel.HIGH.value, RiskLevel.MEDIUM.value],
            default=RiskLevel.LOW.value,
        )



def _first_ds(frame: pd.DataFrame, mask: pd.Series) -> pd.Series:
    return frame.loc[mask].groupby(list(SERIES_KEY), sort=True)[DS].first()


def _days_between(later: pd.Series, earlier: pd.Series) -> pd.Series:
    """Whole days from ``earlier`` to ``later`` (a sub-daily gap counts as a started day); Int64."""
    days = (later - earlier).dt.total_seconds() / _DAY.total_seconds()
    return pd.Series(np.ceil(days), index=later.index).astype("Int64")


def _fmt_day(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values).dt.strftime("%Y-%m-%d").fillna("")


def _reasons(out: pd.DataFrame, cfg: RiskConfig) -> pd.Series:
    """One sentence per series saying what the forecast shows and why the level is what it is."""
    thr = out["threshold"].map("{:g} %".format)
    period = out["seasonal_peak"].fillna("")
    at = np.where(period != "", "at " + period + " ", "on ")
    crosses = (out[METRIC] + " forecast crosses " + thr + " " + at + _fmt_day(out["breach_ds"])
               + " (day " + out["days_to_breach"].astype("string").fillna("") + ")")
    upper = ("; upper bound crosses " + _fmt_day(out["breach_upper_ds"]) + " (day "
             + out["days_to_upper_breach"].astype("string").fillna("") + ")")
    peak_at = np.where((period != "") & out["breach_ds"].isna() & out["breach_upper_ds"].isna(),
                       " (" + period + ")", "")
    peaks = (out[METRIC] + " forecast peaks at " + out["peak_yhat"].map("{:.1f} %".format) + " on "
             + _fmt_day(out["peak_ds"]) + peak_at + ", below " + thr)
    prob = ("; breach probability within " + out["horizon_days"].astype("string") + " days "
            + (out["breach_probability"] * 100).map("{:.0f} %".format) + f" (on at least {cfg.medium_min_days} days "
            + (out["sustained_breach_probability"] * 100).map("{:.0f} %".format) + ")")
    text = np.where(out["breach_ds"].notna(), crosses, peaks)
    text = text + np.where(out["breach_ds"].isna() & out["breach_upper_ds"].notna(), upper, "") + prob
    # Growth is unknown (null) for a history under a year: its recent months' month-end peaks stand in.
    source = ("last year's " + out["analogue_period"].fillna("") + " peaks grown by this year's growth (x"
              + out["analogue_growth"].map("{:.2f}".format) + ")").where(
        out["analogue_growth"].notna(), "the month-end peaks of its last months (same business day before the "
                                        "month end)")
    analogue = ("; " + source + " cross " + thr + " on " + out["analogue_days_above"].astype("string").fillna("0")
                + " days from " + _fmt_day(out["analogue_breach_ds"]))
    # A recurring peak above the forecast's, short of a breach, is said too: sizing keeps room for it.
    recurring = ("; its recurring " + out["analogue_period"].fillna("period-end") + " peak reaches "
                 + out["analogue_peak"].map("{:.0f} %".format) + ", above the forecast's")
    shown = ~out["analogue_hit"] & (out["analogue_peak"] > out["peak_upper"].astype(float)).fillna(False)
    text = text + np.where(out["analogue_hit"], analogue, np.where(shown, recurring, ""))
    days = out["history_days"].astype("Int64").astype("string").fillna("0")
    window = f" of the last {cfg.current_window_days} observed days"
    # The 30- and 90-day counts say "of all N observed days" where the history is shorter than the window.
    span = (pd.to_datetime(out["last_observed"]) - pd.to_datetime(out["first_observed"])).dt.days + 1
    d30, d90 = out["days_over_30d"].astype("string"), out["days_over_90d"].astype("string")
    # ... of its observed days (a gap makes the calendar span longer than the days there are to count).
    counts = pd.Series(np.select([span >= 90, span >= 30],
                                 [d30 + " of the last 30 days, " + d90 + " of the last 90",
                                  d30 + " of the last 30 days, " + d90 + " of all " + days + " observed days"],
                                 default=d90 + " of all " + days + " observed days"), index=out.index)
    saturated = out["days_saturated_recent"]
    capped = ("; saturated (demand above capacity) on " + saturated.astype("string")
              + " of them: the real need is unknown, so any new size is a minimum").where(saturated > 0, "")
    over = (out[METRIC] + " over " + thr + " on " + out["days_over_recent"].astype("string") + window
            + " (" + counts + "; last " + _fmt_day(out["last_over_ds"]) + "): already breaching" + capped)
    short = (out[METRIC] + ": only " + days + f" observed days of history ({cfg.min_history_days} for a full "
             "assessment): level from the recent days and a forecast checked on few or no backtests")
    missing = (out[METRIC] + ": " + days + " observed days of history but no forecast (see forecast_triage and "
               "forecast_failures; re-run capfc forecast after capfc etl): level from the last "
               + out["recent_days"].astype("string") + " observed days only, "
               + out["days_over_recent"].astype("string") + " over " + thr)
    no_data = np.where(out["first_forecast"].notna(),
                       out[METRIC] + ": a forecast but no observed value (every day missing or imputed); "
                                     "no risk level assigned",
                       out[METRIC] + ": no observed value (every day missing or imputed); no risk level assigned")
    status = out["status"]
    # A gap as long as the one that makes a series stale, inside its recent days: they reach further back than
    # their count says (a VM saturated until 25 August, then silent until one idle day on 11 September).
    gap_days = out["recent_gap_days"]
    # (Fewer days than make a series breaching after it, and the series is stale: ``current.mark_stale``.)
    gap = ("; no data for " + gap_days.astype("string") + " days before " + _fmt_day(out["recent_gap_resumed"])
           + ", so its recent days reach back before the gap: check its monitoring").where(
        (cfg.stale_after_days > 0) & (gap_days >= max(cfg.stale_after_days, 1))
        & (out["days_after_gap"] >= cfg.current_min_days_over), "")
    is_short = (out["history_days"] < cfg.min_history_days).to_numpy()
    has_forecast = out["first_forecast"].notna().to_numpy()
    breaching = np.where(has_forecast, over + "; " + text, over)
    breaching = np.where(is_short, breaching + "; only " + days + f" observed days of history "
                         f"({cfg.min_history_days} for a full assessment)", breaching)
    return pd.Series(np.select(
        [status == Status.NO_DATA.value, status == Status.ALREADY_BREACHING.value,
         status == Status.SHORT_HISTORY.value, status == Status.NO_FORECAST.value],
        [no_data, breaching, short + "; " + text, missing], default=text), index=out.index, dtype=object) + gap


def assess_breaches(
    forecasts: pd.DataFrame,
    history: pd.DataFrame,
    cfg: RiskConfig,
    uplifts: pd.DataFrame | None = None,
    analogue: pd.DataFrame | None = None,
    recalibrate: Callable[[np.ndarray], np.ndarray] | None = None,
    current: pd.DataFrame | None = None,
    untested_correlation: float | None = None,
) -> pd.DataFrame:
    """Breach dates, peak, breach probability and risk level for every observed or forecast series.

    ``days_to_breach`` counts from the series' last observed day: a forecast that first exceeds
    the threshold on its 17th day says 17; an ``already_breaching`` series says 0 with its last
    observed day over the threshold as ``breach_ds`` (the forecast's first crossing is in
    ``forecast_breach_ds``).
    ``breach_probability`` is P(the value exceeds the threshold on at least one day of the horizon)
    under the correlated two-piece-normal model of ``probability``. The level is critical / high
    when that cumulative probability reaches
    ``likely_probability`` within ``critical_days`` / ``high_days``, medium when the probability
    of exceeding on at least ``medium_min_days`` days of the horizon
    (``sustained_breach_probability``) reaches ``medium_probability``, low otherwise; a seasonal analogue that crosses
    the threshold on at least ``analogue_min_days`` days raises the level to medium at least.

    The current state comes first: a series over its threshold on at least
    ``current_min_days_over`` of its last ``current_window_days`` observed days is
    ``already_breaching`` and at least high, whatever its history length or forecast. A series
    with fewer than ``min_history_days`` observed days (``short_history``) is levelled like any
    other from its forecast (checked on few or no backtests); one with history but no forecast
    (``no_forecast``) from its recent days only (low unless already breaching). Only a series
    with no observed value (``no_data``) has a null level. ``status`` and ``reason`` say which.

    Args:
        forecasts: server_id, metric, ds, yhat, yhat_lower, yhat_upper (one row per day).
        history: ``history_summary`` of the processed metrics.
        cfg: risk settings (thresholds, interval, correlation, cut-offs).
        uplifts: per-series period uplifts (``seasonal.period_uplifts``) used to name peaks;
            None names none.
        analogue: ``analogue.summarise_analogue`` output (``analogue.seasonal_analogue`` for a whole history);
            None skips the second opinion.
        recalibrate: a non-decreasing map applied to the cumulative breach probabilities before the
            level is decided (``calibration.BreachCalibration.apply``); None keeps them raw.
        current: ``current.current_state`` of the processed metrics; None counts no day as over.
        untested_correlation: the day-to-day correlation for series whose forecasts carry ``is_extrapolation`` on
            their first day (no backtest: ``recalibrate`` and ``cfg``'s fitted correlation were learned on
            backtested series and are not applied to them); None treats every series alike.

    Returns:
        One row per (server_id, metric): the contract columns server_id, metric, risk_level,
        peak_yhat, peak_ds, breach_ds, days_to_breach, breach_probability, then status, threshold,
        breach_upper_ds, days_to_upper_breach, likely_breach_ds, peak_upper, horizon_days,
        history_days, first_observed, last_observed, seasonal_peak, analogue_peak, analogue_breach_ds,
        analogue_days_above, sustained_breach_probability, days_over_recent (of the last
        ``current_window_days`` observed days), days_over_30d, days_over_90d, last_over_ds, reason,
        forecast_breach_ds, recent_gap_days, recent_gap_resumed, days_after_gap, days_saturated_recent
        (``BREACH_EXTRA_COLUMNS``).
    """
    require_columns(forecasts, FORECAST_COLUMNS[:3] + FORECAST_COLUMNS[4:], "forecasts")
    f = forecasts.sort_values([SERVER_ID, METRIC, DS], kind="stable").reset_index(drop=True)
    keys = [SERVER_ID, METRIC]
    threshold = thresholds(f[METRIC], cfg).to_numpy(dtype=float)
    group = f.groupby(keys, sort=True).ngroup().to_numpy()
    position = f.groupby(keys, sort=True).cumcount().to_numpy()
    series = f.groupby(keys, sort=True).agg(
        horizon_days=(DS, "size"), first_forecast=(DS, "first"), threshold=(METRIC, "first"))
    series["threshold"] = thresholds(series["threshold"], cfg)
    scores = exceedance_scores(f["yhat"].to_numpy(float), f["yhat_lower"].to_numpy(float),
                               f["yhat_upper"].to_numpy(float), threshold, cfg.interval)
    grid = padded(scores, group, position, len(series), np.inf)
    cum = cumulative_probability(grid, cfg.error_correlation)
    # Medium asks for a sustained breach (>= medium_min_days days), as the current state does: a
    # wide interval around a busy but steady series makes one stray day over likely, not a breach.
    sustained = count_probability(grid, cfg.error_correlation, cfg.medium_min_days)
    if recalibrate is not None:
        cum = recalibrate(cum)
    # A calibration is fitted on backtested series; a series without a backtest (its first forecast day is already
    # extrapolation: a history too short to test) keeps its forecast's probabilities under the configured
    # correlation (helper-64: idle fastStorage VMs with 8 days went from 0.19 to 0.54, critical, under a fitted
    # correlation of 0.2 and map).
    untested = _untested(f, group, len(series)) if untested_correlation is not None else np.zeros(len(series), bool)
    if untested_correlation is not None and untested.any():
        cum[untested] = cumulative_probability(grid[untested], untested_correlation)
        sustained[untested] = count_probability(grid[untested], untested_correlation, cfg.medium_min_days)
    series["sustained_breach_probability"] = sustained
    series["breach_probability"] = cum[:, -1] if cum.size else np.zeros(len(series))
    reached = cum >= cfg.likely_probability
    likely_pos = np.where(reached.any(axis=1), reached.argmax(axis=1), -1) if cum.size else np.full(len(series), -1)
    # f is sorted by series then day, so (series g, day position p) is row starts[g] + p.
    starts = np.concatenate([[0], np.cumsum(series["horizon_days"].to_numpy())[:-1]]).astype(np.int64)
    likely = pd.Series(f[DS].to_numpy()[starts + np.maximum(likely_pos, 0)], index=series.index)
    series["likely_breach_ds"] = likely.where(likely_pos >= 0)

    peak_rows = f.loc[f.groupby(keys, sort=True)["yhat"].idxmax()]
    series["peak_yhat"] = peak_rows["yhat"].to_numpy()
    series["peak_ds"] = peak_rows[DS].to_numpy()
    series["peak_upper"] = f.groupby(keys, sort=True)["yhat_upper"].max()
    series["breach_ds"] = _first_ds(f, pd.Series(f["yhat"].to_numpy() > threshold))
    series["breach_upper_ds"] = _first_ds(f, pd.Series(f["yhat_upper"].to_numpy() > threshold))

    out = series.reset_index().merge(history, on=keys, how="outer")
    carried = current[[*keys, *_CURRENT_CARRIED]] if current is not None else \
        pd.DataFrame(columns=[*keys, *_CURRENT_CARRIED])
    out = out.merge(carried, on=keys, how="left")
    for column in ("days_over_recent", "days_over_30d", "days_over_90d", "days_saturated_recent", "recent_gap_days",
                   "days_after_gap"):
        out[column] = out[column].astype(float).fillna(0).astype(np.int64)
    out["recent_days"] = np.minimum(out["history_days"].fillna(0).astype(np.int64), cfg.current_window_days)
    out["last_over_ds"] = pd.to_datetime(out["last_over_ds"])
    observed = (out["history_days"].fillna(0) > 0).to_numpy()
    has_forecast = out["first_forecast"].notna().to_numpy()
    breaching = flag(out["already_breaching"]).to_numpy() & observed
    short = (out["history_days"].fillna(0) < cfg.min_history_days).to_numpy()
    out["status"] = np.select(
        [~observed, breaching, ~has_forecast, short],
        [Status.NO_DATA.value, Status.ALREADY_BREACHING.value, Status.NO_FORECAST.value, Status.SHORT_HISTORY.value],
        default=Status.ASSESSED.value)
    out["threshold"] = out["threshold"].fillna(thresholds(out[METRIC], cfg))
    out["horizon_days"] = out["horizon_days"].fillna(0).astype(np.int64)
    out["history_days"] = out["history_days"].fillna(0).astype(np.int64)
    # Without history the forecast is taken to start the day after the (unknown) last observation.
    out["last_observed"] = out["last_observed"].fillna(out["first_forecast"] - _DAY)
    out["days_to_breach"] = _days_between(out["breach_ds"], out["last_observed"])
    out["days_to_upper_breach"] = _days_between(out["breach_upper_ds"], out["last_observed"])
    likely_days = _days_between(out["likely_breach_ds"], out["last_observed"]).to_numpy(dtype=float, na_value=np.nan)
    codes = _level_codes(out["sustained_breach_probability"].to_numpy(dtype=float), likely_days, cfg)
    # Without a forecast nothing points ahead: low unless the recent days say otherwise (below).
    codes = np.where(has_forecast, codes, RiskLevel.LOW.value)
    assessed = observed & has_forecast
    if analogue is None or analogue.empty:
        analogue = empty_analogue()
    out = out.merge(analogue, on=keys, how="left")
    out["analogue_days_above"] = out["analogue_days_above"].astype(float).fillna(0).astype(np.int64)
    out["analogue_breach_ds"] = pd.to_datetime(out["analogue_breach_ds"])
    out["analogue_peak"] = out["analogue_peak"].astype(float)
    out["analogue_hit"] = (assessed & (cfg.analogue_min_days > 0)
                           & (out["analogue_days_above"] >= cfg.analogue_min_days).to_numpy())
    codes = np.where(out["analogue_hit"], np.maximum(codes, RiskLevel.MEDIUM.value), codes)
    codes = np.where(breaching, np.maximum(codes, RiskLevel.HIGH.value), codes)
    out["risk_level"] = labels_from_codes(np.where(observed, codes, -1))
    unknown = ~assessed
    out.loc[unknown, ["breach_probability", "sustained_breach_probability"]] = np.nan
    for column in ("breach_ds", "breach_upper_ds", "likely_breach_ds", "analogue_breach_ds"):
        out.loc[unknown, column] = pd.NaT
    out.loc[unknown, ["days_to_breach", "days_to_upper_breach"]] = pd.NA

    if uplifts is not None and len(out):
        aligned = out[keys].merge(uplifts, on=keys, how="left")[list(UPLIFT_COLUMNS)].fillna(0.0)
        event = (out["breach_ds"].fillna(out["analogue_breach_ds"].where(out["analogue_hit"]))
                 .fillna(out["breach_upper_ds"]).fillna(out["peak_ds"]))
        out["seasonal_peak"] = name_periods(event, aligned, cfg.period_end_business_days,
                                            cfg.seasonal_min_uplift).to_numpy()
    else:
        out["seasonal_peak"] = ""
    out["reason"] = _reasons(out, cfg)
    # A series over its threshold now breaches now: one answer for every table, chart and summary
    # (its breach date is its last observed day over the threshold, 0 days away); the forecast's own
    # first crossing stays in forecast_breach_ds.
    out["forecast_breach_ds"] = out["breach_ds"]
    out.loc[breaching, "breach_ds"] = out.loc[breaching, "last_over_ds"].fillna(out.loc[breaching, "last_observed"])
    out.loc[breaching, "days_to_breach"] = 0
    columns = [SERVER_ID, METRIC, "risk_level", "peak_yhat", "peak_ds", "breach_ds", "days_to_breach",
               "breach_probability", *BREACH_EXTRA_COLUMNS]
    result = out[columns].sort_values(keys, kind="stable").reset_index(drop=True)
    logger.debug("assessed %d series: %s", len(result), result["risk_level"].value_counts(dropna=False).to_dict())
    return result
