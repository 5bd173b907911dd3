"""The ranked risks every report and the dashboard show: order, already breaching first, breach words."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from capacity_forecaster.report.data import ReportData
from capacity_forecaster.report.text import day
from capacity_forecaster.risk.levels import (
    ACTION_ORDER,
    LEVEL_LABELS,
    Status,
    level_codes,
    likely_first,
    percent,
    rank_risks,
    stale_words,
    without_stale,
)

AT_RISK_LEVELS = ("critical", "high", "medium")


ALREADY = Status.ALREADY_BREACHING.value
STALE = Status.STALE.value


def ranked_risks(data: ReportData) -> pd.DataFrame:
    """Every assessed series, riskiest first, with the server's names and recommended action.

    Order (``risk.levels.rank_risks``): already breaching first and stale last, then risk level
    (critical first), most recent days over, days to breach (soonest first, none last), breach
    probability (highest first), server_id, metric.

    Returns:
        The server_risk columns plus level_code (3 critical ... 0 low, -1 unassessed), hostname,
        application, environment, action, monthly_savings, model (the chosen one) and mase (its
        mean backtest MASE) where those tables exist. Empty without server_risk.
    """
    risk = data.table("server_risk")
    if risk is None or risk.empty:
        return pd.DataFrame(columns=["server_id", "metric", "risk_level", "level_code"])
    status = risk["status"] if "status" in risk.columns else pd.Series("assessed", index=risk.index)
    over = risk["days_over_recent"] if "days_over_recent" in risk.columns else pd.Series(0, index=risk.index)
    out = risk.assign(level_code=level_codes(risk["risk_level"]), status=status,
                      days_over_recent=over.fillna(0).astype(int))
    inventory = data.table("inventory")
    if inventory is not None:
        names = inventory[[c for c in ("server_id", "hostname", "application", "environment") if c in inventory]]
        out = out.merge(names, on="server_id", how="left")
    recs = data.table("recommendations")
    if recs is not None:
        out = out.merge(recs[["server_id", "action", "monthly_savings"]], on="server_id", how="left")
    chosen = chosen_models(data)
    if not chosen.empty:
        out = out.merge(chosen, on=["server_id", "metric"], how="left")
    return rank_risks(out)  # the one ranking every output uses (risk.levels.RISK_ORDER)


def chosen_models(data: ReportData) -> pd.DataFrame:
    """The model forecasting each series and its mean backtest error.

    Returns:
        server_id, metric, model, mae, mape, mase, coverage (errors NaN without backtests).
    """
    forecasts, backtests = data.forecasts, data.table("backtests")
    if forecasts is not None and not forecasts.series.empty:
        chosen = forecasts.series[["server_id", "metric", "model"]]
    elif backtests is not None and "selected" in backtests.columns:
        chosen = backtests[backtests["selected"].astype(bool)].groupby(
            ["server_id", "metric"], as_index=False)[["model"]].first()
    else:
        return pd.DataFrame(columns=["server_id", "metric", "model", "mae", "mape", "mase", "coverage"])
    if backtests is None or backtests.empty:
        return chosen.assign(mae=np.nan, mape=np.nan, mase=np.nan, coverage=np.nan)
    errors = backtests.groupby(["server_id", "metric", "model"], as_index=False)[
        ["mae", "mape", "mase", "coverage"]].mean()
    return chosen.merge(errors, on=["server_id", "metric", "model"], how="left")


def already_mask(frame: pd.DataFrame) -> pd.Series:
    """Rows of series already over their threshold: status ``already_breaching``, or (a frame without status)
    a breach 0 days out on or before the series' last observed day."""
    if "status" in frame.columns:
        return frame["status"].eq(ALREADY).fillna(False).astype(bool)
    if {"days_to_breach", "breach_ds", "last_observed"} <= set(frame.columns):
        days = pd.to_numeric(frame["days_to_breach"], errors="coerce")
        on_or_before = pd.to_datetime(frame["breach_ds"]) <= pd.to_datetime(frame["last_observed"])
        return (days.eq(0) & on_or_before).fillna(False).astype(bool)
    return pd.Series(False, index=frame.index)


def reported_breaches(ranked: pd.DataFrame) -> pd.DataFrame:
    """The breach columns as every report (not the dashboard) shows them, whichever risk stage wrote the lake.

    An already-breaching series breaches now: ``breach_ds`` is its last observed day over the threshold
    (``last_over_ds``; NaT where the lake lacks it) and ``days_to_breach`` is 0. The forecast's own first
    crossing is ``forecast_breach_ds`` (the risk stage's column where it writes one, else taken from
    ``breach_ds`` before the change). A lake already written this way passes through unchanged.

    Returns:
        ``ranked`` with breach_ds, days_to_breach and forecast_breach_ds as above (a new frame).
    """
    if ranked.empty or "breach_ds" not in ranked.columns:
        return ranked
    out = ranked.copy()
    out["breach_ds"] = pd.to_datetime(out["breach_ds"])
    if "forecast_breach_ds" not in out.columns:
        out["forecast_breach_ds"] = out["breach_ds"]
    now = already_mask(out)
    if now.any():
        last = pd.to_datetime(out["last_over_ds"]) if "last_over_ds" in out.columns else pd.Series(pd.NaT, out.index)
        out["breach_ds"] = out["breach_ds"].mask(now, last)
        if "days_to_breach" in out.columns:
            out["days_to_breach"] = pd.to_numeric(out["days_to_breach"], errors="coerce").mask(now, 0)
    return out


def report_risks(data: ReportData) -> pd.DataFrame:
    """``ranked_risks`` with the breach columns as the reports show them (``reported_breaches``)."""
    return reported_breaches(ranked_risks(data))


def ordered_recommendations(recs: pd.DataFrame) -> pd.DataFrame:
    """Recommendations in the one order the tables use: action (upsize first, keep last), the date the capacity
    is needed (soonest first), savings (largest first), server_id."""
    rank = recs["action"].map({a: i for i, a in enumerate(ACTION_ORDER)}).fillna(len(ACTION_ORDER))
    needed = pd.to_datetime(recs["needed_by"]) if "needed_by" in recs.columns else pd.Series(pd.NaT, index=recs.index)
    savings = pd.to_numeric(recs["monthly_savings"], errors="coerce") if "monthly_savings" in recs.columns else 0.0
    keyed = recs.assign(_rank=rank, _needed=needed, _savings=savings)
    keyed = keyed.sort_values(["_rank", "_needed", "_savings", "server_id"], ascending=[True, True, False, True],
                              na_position="last", kind="stable")
    return keyed.drop(columns=["_rank", "_needed", "_savings"])


def breach_when(row: Mapping[Any, Any]) -> tuple[str, str]:
    """(breach date, days) as the tables show them: ``now`` / ``0`` for a series already breaching,
    ``no data since <day>`` (``levels.stale_words`` without its ``stale:``) / ``-`` for a stale one (its dates
    are about the past), ``likely by <day>`` / ``-`` where that day comes before the median's crossing
    (``levels.likely_first``), else the crossing and its days."""
    if row.get("status") == ALREADY:
        return "now", "0"
    if row.get("status") == STALE:
        return stale_words(row).removeprefix("stale: "), "-"
    days = row.get("days_to_breach")
    if likely_first(row):
        return f"likely by {day(row.get('likely_breach_ds'))}", "-"  # as breach_phrase says it
    return day(row.get("breach_ds")), "-" if days is None or pd.isna(days) else str(int(days))


def breach_phrase(row: Mapping[Any, Any], with_day: bool = False) -> str:
    """A series' breach in words: ``already breaching (last over 2026-06-30)``, ``stale: no data since
    2013-09-29``, ``breach 2026-07-31`` (``, day 31`` with ``with_day``), ``breach likely by 2026-08-14 (median
    stays under)`` or ``(median crosses 2026-09-02)`` (``likely_first``: ``likely_breach_ds``, the day the breach
    probability reaches ``likely_probability``, comes first), or ``no breach forecast in the horizon``."""
    breach = row.get("breach_ds")
    if row.get("status") == STALE:
        return stale_words(row)
    if row.get("status") == ALREADY:
        last = row.get("last_over_ds", breach)
        return "already breaching" + ("" if last is None or pd.isna(last) else f" (last over {day(last)})")
    if likely_first(row):
        # The median stays under (or crosses later), but the intervals make a breach likely (a critical or high
        # level says so): "critical, no breach forecast" read as a contradiction (helper-46's vendor export).
        median = ("median stays under" if breach is None or pd.isna(breach) else f"median crosses {day(breach)}")
        return f"breach likely by {day(row.get('likely_breach_ds'))} ({median})"
    if breach is None or pd.isna(breach):
        return "no breach forecast in the horizon"
    days = row.get("days_to_breach")
    return f"breach {day(breach)}" + (f", day {int(days)}" if with_day and days is not None and not pd.isna(days)
                                      else "")


def already_breaching(ranked: pd.DataFrame) -> pd.DataFrame:
    """The ``ranked_risks`` rows of series already over their threshold, in ranked order."""
    if ranked.empty or "status" not in ranked.columns:
        return ranked.iloc[0:0]
    return ranked[ranked["status"] == ALREADY]


def live_risks(ranked: pd.DataFrame) -> pd.DataFrame:
    """The rows of series that are not stale (whose data did not end long before the fleet's): what every
    count of servers at risk and every earliest breach is taken from, as in the risk summary."""
    return without_stale(ranked)


def stale_servers(ranked: pd.DataFrame) -> int:
    """How many servers have a stale series."""
    if ranked.empty or "status" not in ranked.columns:
        return 0
    return int(ranked.loc[ranked["status"] == STALE, "server_id"].nunique())


def server_levels(ranked: pd.DataFrame) -> pd.DataFrame:
    """The worst series of every server: its highest level, the first in ``ranked_risks`` order among equals.

    (The ranking puts already breaching series first, so a server breaching now on disk (high) with a critical
    cpu forecast must not be counted by its first row: it is a critical server.)
    """
    if ranked.empty:
        return ranked.reset_index(drop=True)
    codes = pd.Series(level_codes(ranked["risk_level"]), index=ranked.index)
    worst = ranked.loc[codes.sort_values(ascending=False, kind="stable").index]
    return worst.drop_duplicates("server_id", keep="first").reset_index(drop=True)


def level_counts(ranked: pd.DataFrame) -> dict[str, int]:
    """Servers per worst risk level, critical first (servers without an assessment and stale series left out)."""
    worst = server_levels(live_risks(ranked))
    counts = worst["risk_level"].value_counts()
    return {level: int(counts.get(level, 0)) for level in reversed(LEVEL_LABELS)}


def unlevelled_counts(ranked: pd.DataFrame, fleet: int) -> dict[str, int]:
    """Servers ``level_counts`` leaves out, so that the levels and these add up to the ``fleet``: those whose only
    levelled series are stale ("stale"), and those without any level (no metrics, or every series without data)."""
    live = set(server_levels(live_risks(ranked))["server_id"]) if len(ranked) else set()
    levelled = set(ranked.loc[ranked["risk_level"].notna(), "server_id"]) if len(ranked) else set()
    stale = len(levelled - live)
    return {"stale": stale, "not assessed": max(fleet - len(live) - stale, 0)}


def risk_row(ranked: pd.DataFrame, server: str, metric: str) -> dict[str, Any]:
    """The ``ranked_risks`` row of one series as a plain dict (empty when the series has none)."""
    match = ranked[(ranked["server_id"] == server) & (ranked["metric"] == metric)] if len(ranked) else ranked
    return {str(k): v for k, v in match.iloc[0].items()} if len(match) else {}


def table_level(row: Mapping[Any, Any]) -> tuple[str, str]:
    """(colour key of ``style.RISK_COLOURS``, text) of a series' level in the risk tables: a stale series reads
    ``stale (critical)`` in grey, its level being as of old data (helper-69: fastStorage's stale VMs read
    "critical, P(breach) 88 %, keep")."""
    level = str(row.get("risk_level"))
    return ("stale", stale_level(level)) if row.get("status") == STALE else (level, level)


def breach_sort_days(frame: pd.DataFrame, prefix: str = "") -> pd.Series:
    """The day each row's breach cell (``breach_when``) sorts by: the earlier of the median's crossing and the likely
    day (``levels.likely_first``; the last day over for a series already breaching, as ``reported_breaches`` sets
    it), none for a stale series. ``prefix``: a what-if side's columns (``scenario_``)."""
    at = pd.to_datetime(frame[f"{prefix}breach_ds"])
    if f"{prefix}likely_breach_ds" in frame.columns:
        at = pd.concat([at, pd.to_datetime(frame[f"{prefix}likely_breach_ds"])], axis=1).min(axis=1)
    if f"{prefix}status" in frame.columns:
        at = at.mask(frame[f"{prefix}status"].eq(STALE).fillna(False).astype(bool))
    return at


def stale_level(level: str) -> str:
    """``stale (critical)``: a stale series' level, as of its last data."""
    return f"stale ({level})"


def stale_levels(levels: pd.Series, stale: Any) -> pd.Series:
    """``levels`` with those of the ``stale`` rows (a boolean mask) as ``stale_level`` reads them (the tables that
    show raw cells: the workbook, the dashboard); absent levels stay absent."""
    marked = pd.Series(np.asarray(stale, dtype=bool), index=levels.index) & levels.notna()
    return levels.astype(object).mask(marked, "stale (" + levels.astype(str) + ")")


def table_probability(row: Mapping[Any, Any]) -> str:
    """A series' breach probability as the risk tables show it: ``-`` for a stale one (a forecast from old data)."""
    return "-" if row.get("status") == STALE else percent(row.get("breach_probability"))


def level_of(row: dict[str, Any]) -> str:
    """The risk level of a ``risk_row``, or ``unassessed``."""
    level = row.get("risk_level")
    return level if isinstance(level, str) else "unassessed"


def threshold_of(row: dict[str, Any], data: ReportData, metric: str) -> float:
    """The breach threshold of a ``risk_row`` (the risk stage's own column, else the configured one)."""
    value = row.get("threshold")
    return float(value) if value is not None and not pd.isna(value) else data.settings.risk.threshold_for(metric)
