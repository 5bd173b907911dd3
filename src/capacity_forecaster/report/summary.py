"""Figures every report shares: KPIs, model accuracy, the cluster map projection, assumptions, headlines."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from capacity_forecaster.messages import examples
from capacity_forecaster.report.data import ReportData, not_available, scenario_names, whatif_name
from capacity_forecaster.report.risks import (
    ALREADY,
    AT_RISK_LEVELS,
    already_breaching,
    chosen_models,
    level_counts,
    live_risks,
    report_risks,
    server_levels,
    stale_servers,
)
from capacity_forecaster.report.text import (
    NO_PRICES,
    NOT_PRICED,
    cents,
    day,
    money,
    numeric,
    plural,
    priced_servers,
    savings_by_action,
    says_something,
)
from capacity_forecaster.risk.current import rule_text
from capacity_forecaster.risk.levels import actions_text
from capacity_forecaster.risk.seasonal import MIN_PERIODS, month_ends_covered
from capacity_forecaster.storage.manifest import producing_run


@dataclass(frozen=True)
class Kpi:
    """One headline number.

    Attributes:
        key: stable identifier (``servers``, ``at_risk``, ...).
        label: what a reader sees.
        value: the number (None when not available).
        text: the formatted value.
        note: one line of context.
    """

    key: str
    label: str
    value: float | None
    text: str
    note: str = ""


def _days(n: int) -> str:
    """``1 day``, ``2 days``."""
    return f"{n} day" if n == 1 else f"{n} days"


def published_models(data: ReportData) -> pd.Series | None:
    """Series per model in the published forecasts (a baseline published without a backtest included), or None
    without them."""
    if data.forecasts is None or data.forecasts.series.empty:
        return None
    return data.forecasts.series.groupby("model").size()


def model_accuracy(backtests: pd.DataFrame | None, published: pd.Series | None = None) -> pd.DataFrame:
    """Backtest accuracy by model, best median MASE first: each series' mean over its backtest windows,
    then the median across series (as the executive summary's error of the chosen models, so the two
    agree; a median over single windows read lower on Rnd, 0.71 against 0.85).

    Returns:
        model, series, median_mase, median_mape, median_mae, mean_coverage, selected (series
        whose forecast uses the model: ``published``, series per model of the published forecasts, where
        given, else the backtests' selected flags, which miss a baseline published without a backtest).
        Empty without backtests.
    """
    cols = ["model", "series", "median_mase", "median_mape", "median_mae", "mean_coverage", "selected"]
    if backtests is None or backtests.empty:
        return pd.DataFrame(columns=cols)
    keyed = backtests.assign(series=backtests["server_id"].astype(str) + "|" + backtests["metric"].astype(str))
    per_series = _series_means(backtests, ["mase", "mape", "mae", "coverage"])
    out = per_series.groupby("model").agg(
        series=("server_id", "size"), median_mase=("mase", "median"), median_mape=("mape", "median"),
        median_mae=("mae", "median"), mean_coverage=("coverage", "mean"))
    selected = (published if published is not None
                else keyed[keyed["selected"].astype(bool)].groupby("model")["series"].nunique())
    out["selected"] = selected.reindex(out.index).fillna(0).astype(int)
    return out.sort_values("median_mase", na_position="last").reset_index()[cols]


def series_mase(backtests: pd.DataFrame) -> pd.DataFrame:
    """model, server_id, metric, mase: each series' mean MASE over its backtest windows (what the accuracy
    charts draw, the statistic ``model_accuracy`` takes the median of)."""
    return _series_means(backtests, ["mase"])


def _series_means(backtests: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """model, server_id, metric and each of ``columns`` averaged over the series' backtest windows."""
    return backtests.groupby(["model", "server_id", "metric"], as_index=False, observed=True)[columns].mean()


# The two profile features the cluster map plots, and their axis titles: what a planner reads off a
# server's position (how busy it usually is, how much busier its busiest days are).
CLUSTER_AXES = {
    "level": "average CPU (mean of the daily P95, % of capacity)",
    "peak": "peak CPU (busiest 1 % of days, % of capacity)",
}


# The metric the cluster map plots: its red rings mark servers whose risk is in this metric (a server at
# high memory risk idling at 45 % CPU would otherwise look ringed for its CPU).
CLUSTER_METRIC = "cpu"
CLUSTER_RING = "critical or high CPU risk"


def week_grid(frame: pd.DataFrame, servers: int | None = None) -> pd.DataFrame:
    """Servers x weeks of ``frame`` (server_id, week, value) on every calendar week from the first to the
    last (a week no server has data for is a NaN column, not squeezed out: four servers that stopped in
    September 2013 were painted through to May 2014), busiest servers (mean of the last 13 calendar
    weeks) first, the first ``servers`` of them (None: all).
    """
    grid = frame.pivot(index="server_id", columns="week", values="value").sort_index(axis=1)
    if grid.shape[1]:
        weeks = pd.DatetimeIndex(grid.columns)
        grid.columns = weeks
        grid = grid.reindex(columns=pd.date_range(weeks[0], weeks[-1], freq="7D"))
    order = grid.iloc[:, -13:].mean(axis=1).sort_values(ascending=False, na_position="last").index
    return grid.loc[order if servers is None else order[:servers]]


def cluster_range(top: float) -> tuple[float, float]:
    """An axis range of the cluster map: 0 to ``top`` percent with a 4 % margin both sides, so the markers and risk
    rings of servers at 0 % or at the top are drawn whole (at exactly 0-100 the frame cut them in half)."""
    pad = 0.04 * top
    return -pad, top + pad


def cluster_ringed(ranked: pd.DataFrame) -> set[str]:
    """Servers ringed on the cluster map: critical or high risk in the plotted metric (``CLUSTER_METRIC``), stale
    series aside (their levels are as of old data: the map counted 8 beside the packs' 6 critical, helper-50)."""
    if ranked.empty:
        return set()
    hot = live_risks(ranked)
    hot = hot[(hot["level_code"] >= 2) & (hot["metric"] == CLUSTER_METRIC)]
    return set(hot["server_id"].astype(str))


def cluster_map(data: ReportData) -> pd.DataFrame:
    """Every server's position on the cluster map: its average CPU against its peak CPU.

    Servers above the diagonal have peaks well beyond their usual load (month-end batches,
    seasonal workloads); servers above the threshold line already reach it on their busiest days.

    Returns:
        server_id, level (mean daily P95 CPU, %), peak (P99 of the daily P95 CPU, %), peak_ratio
        (peak / level), cluster_label (``unclustered`` without the clusters table); axis titles in
        ``attrs["axes"]`` (``CLUSTER_AXES``). Empty without metrics.
    """
    profiles = data.profiles
    columns = ["server_id", "level", "peak", "peak_ratio", "cluster_label"]
    if profiles is None or profiles.empty or "cpu_mean" not in profiles.columns:
        return pd.DataFrame(columns=columns)
    level = profiles["cpu_mean"].astype(float)
    peak = profiles["cpu_p99"].astype(float)
    out = pd.DataFrame({"server_id": profiles["server_id"], "level": level, "peak": peak,
                        "peak_ratio": peak / level.where(level > 0)})
    clusters = data.table("clusters")
    if clusters is not None:
        out = out.merge(clusters[["server_id", "cluster_label"]], on="server_id", how="left")
    out["cluster_label"] = out.get("cluster_label", pd.Series(index=out.index, dtype=object)).fillna("unclustered")
    out = out[columns]
    out.attrs["axes"] = dict(CLUSTER_AXES)
    # The x axis ends a little past the busiest server (0-100 % would leave most of the plot empty).
    top = float(np.nanmax(level.to_numpy(float))) if len(level) else 0.0
    out.attrs["level_max"] = float(min(100.0, max(20.0, np.ceil(1.2 * top / 10.0) * 10.0)))
    return out


def profile_text(data: ReportData) -> str:
    """What the clusters' workload profile can show of this history: levels and trend always, weekly patterns from
    two weeks, month-end patterns only from ``seasonal.MIN_PERIODS`` month-ends (the uplift is 0 below that)."""
    parts = ["levels"]
    if data.period is not None:
        first, last = data.period
        patterns = ["weekly"] if (last - first).days + 1 >= 14 else []
        business_days = data.settings.risk.period_end_business_days
        if month_ends_covered(first, last, business_days) >= MIN_PERIODS:
            patterns.append("month-end")
        if patterns:
            parts.append(" and ".join(patterns) + " patterns")
    parts.append("trend")
    return ", ".join(parts)


def _critical_note(data: ReportData) -> str:
    """``breach likely within 30 days``, or within the forecast where it is shorter than ``risk.critical_days``."""
    return level_definitions(data)[0][1]


def kpis(data: ReportData, ranked: pd.DataFrame | None = None) -> list[Kpi]:
    """The headline numbers of the fleet, in reading order; unavailable ones say why.

    Returns:
        Kpis: servers, at_risk, critical, earliest_breach, fleet_cost, net_savings, annual_savings,
        accuracy, data_period, horizon.
    """
    ranked = report_risks(data) if ranked is None else ranked
    inventory, recs = data.table("inventory"), data.table("recommendations")
    out = []
    servers = len(inventory) if inventory is not None else None
    out.append(Kpi("servers", "Servers in the fleet", servers, f"{servers:,}" if servers is not None else "-"))
    if ranked.empty:
        out.append(Kpi("at_risk", "Servers at risk", None, "-", "risk not available: run capfc risk"))
        out.append(Kpi("critical", "Critical servers", None, "-", _critical_note(data)))
        out.append(Kpi("already_breaching", "Already breaching", None, "-", "risk not available: run capfc risk"))
        out.append(Kpi("earliest_breach", "Earliest breach", None, "-"))
    else:
        # A stale series' level is as of data that ended long ago: counted apart, never "at risk" now.
        live = live_risks(ranked)
        counts = level_counts(ranked)
        at_risk = sum(counts[level] for level in AT_RISK_LEVELS)
        stale_note = stale_text(ranked)
        cfg = data.settings.risk
        now = already_breaching(ranked)
        servers_now = int(now["server_id"].nunique())
        rule = rule_text(cfg)
        out.append(Kpi("already_breaching", "Already breaching", servers_now, f"{servers_now:,}", rule))
        out.append(Kpi("at_risk", "Servers at risk", at_risk, f"{at_risk:,}",
                       f"{counts['critical']} critical, {counts['high']} high, {counts['medium']} medium"
                       + stale_note))
        # Already breaching is at least high: say why such a server is not counted critical here.
        critical_servers = set(live.loc[live["risk_level"] == "critical", "server_id"])
        high_now = len(set(now["server_id"]) - critical_servers)
        # "within 30 days", not "that soon": beside a P(breach) of 99 % over the horizon (helper-69).
        window = _critical_note(data).removeprefix("breach likely ")
        why = (f"; {high_now} of the {servers_now} already breaching {'is' if high_now == 1 else 'are'} high, not "
               f"critical: {'its' if high_now == 1 else 'their'} forecast makes no new breach likely {window}"
               if high_now else "")
        out.append(Kpi("critical", "Critical servers", counts["critical"], f"{counts['critical']:,}",
                       _critical_note(data) + why))
        breaches = live.dropna(subset=["breach_ds"]).sort_values(["breach_ds", "server_id"])
        if len(now):
            first = now.iloc[0]
            out.append(Kpi("earliest_breach", "Earliest breach", 0.0, "now",
                           f"{first['server_id']} {first['metric']}: over on {int(first['days_over_recent'])} of "
                           f"the last {cfg.current_window_days} observed days"))
        elif breaches.empty:
            horizon = forecast_horizon(data) or data.settings.forecast.horizon
            out.append(Kpi("earliest_breach", "Earliest breach", None, "none",
                           f"no forecast crosses its threshold within {_days(horizon)}"))
        else:
            first = breaches.iloc[0]
            out.append(Kpi("earliest_breach", "Earliest breach", float(first["days_to_breach"]),
                           day(first["breach_ds"]), f"{first['server_id']} {first['metric']}, "
                                                    f"day {int(first['days_to_breach'])} of the forecast"))
    money_kpis = (("fleet_cost", "Fleet cost per month"), ("net_savings", "Net savings per month"),
                  ("annual_savings", "Net savings per year"))
    if recs is None:
        for key, label in money_kpis:
            out.append(Kpi(key, label, None, "-", "recommendations not available: run capfc risk"))
    else:
        priced = priced_servers(recs)
        acted = plural(int((recs["action"] != "keep").sum()), "server") + " with an action"
        if not priced:
            notes = {"fleet_cost": f"0 of {plural(len(recs), 'server')} priced: {NO_PRICES}",
                     "net_savings": "savings are unknown, not zero",
                     "annual_savings": acted}
            out.extend(Kpi(key, label, None, NOT_PRICED, notes[key]) for key, label in money_kpis)
        else:
            cost = cents(np.nansum(numeric(recs, "current_monthly_cost").to_numpy(float)))
            net = cents(np.nansum(numeric(recs, "monthly_savings").to_numpy(float)))
            share = f"{100 * net / cost:.1f} % of fleet cost" if cost > 0 else ""
            counted = (plural(priced, "server") if priced == len(recs)
                       else f"{priced:,} of {plural(len(recs), 'server')}") + " priced"
            out.append(Kpi("fleet_cost", "Fleet cost per month", cost, money(cost), counted))
            out.append(Kpi("net_savings", "Net savings per month", net, money(net),
                           share if priced == len(recs) else f"{share} (priced servers only)".strip()))
            out.append(Kpi("annual_savings", "Net savings per year", cents(12 * net), money(12 * net), acted))
    accuracy = model_accuracy(data.table("backtests"))
    chosen = chosen_models(data)
    if accuracy.empty or chosen["mase"].isna().all():
        # With forecasts made, the histories were too short for a backtest (helper-72: "run capfc forecast" after
        # it ran on a day or two of data).
        why = ("backtests not available: run capfc forecast" if data.forecasts is None or data.forecasts.series.empty
               else "no backtest: the histories are too short to check a forecast on")
        out.append(Kpi("accuracy", "Forecast error (MASE)", None, "-", why))
    else:
        mase = float(chosen["mase"].median())
        out.append(Kpi("accuracy", "Forecast error (MASE)", mase, f"{mase:.2f}",
                       "median of the chosen models; below 1 beats a weekly seasonal-naive forecast in-sample"))
    period = data.period
    out.append(Kpi("data_period", "Data period", None if period is None else float((period[1] - period[0]).days + 1),
                   "-" if period is None else f"{period[0]} to {period[1]}",
                   # A span, not days with data (helper-46: NAB's two series that never overlap read "131 days").
                   "" if period is None else f"daily P95 over {(period[1] - period[0]).days + 1:,} days, first "
                   "to last observed day"))
    forecasts = data.forecasts
    if forecasts is None or forecasts.series.empty:
        out.append(Kpi("horizon", "Forecast horizon", None, "-", "forecasts not available: run capfc forecast"))
    else:
        days = forecast_horizon(data) or 0
        out.append(Kpi("horizon", "Forecast horizon", float(days), _days(days),
                       f"to {day(forecasts.series['last'].max())}"))
    return out


def forecast_horizon(data: ReportData) -> int | None:
    """Days ahead of the forecasts in the lake (their longest series), which a later ``capfc forecast --horizon``
    may have set to other than the configured ``forecast.horizon``; None without forecasts."""
    forecasts = data.forecasts
    return None if forecasts is None or forecasts.series.empty else int(forecasts.series["days"].max())


def _horizon_row(data: ReportData) -> tuple[str, str, str]:
    fc = data.settings.forecast
    models = f"models: {fc.models}; {fc.backtest_windows} backtest windows"
    horizon = forecast_horizon(data)
    if horizon is None:
        return ("Forecast horizon", f"{_days(fc.horizon)} (configured)",
                f"forecasts {not_available('forecasts')}; {models}")
    configured = "" if horizon == fc.horizon else f" (the configured default is {_days(fc.horizon)})"
    assert data.forecasts is not None  # a horizon comes from the forecasts
    series = data.forecasts.series
    beyond = int(series["extrapolated_from"].notna().sum())
    extrapolated = (f"; {beyond:,} of {len(series):,} series extrapolated beyond the lead their backtests validated"
                    if beyond else "")
    return "Forecast horizon", _days(horizon), f"of the forecasts in the lake{configured}; {models}{extrapolated}"


def level_definitions(data: ReportData) -> list[tuple[str, str, str]]:
    """The Critical, High and Medium rows of the assumptions: the configured rules (``risk.critical_days``,
    ``high_days``, ``likely_probability``, ``medium_probability``) as far as the forecast reaches: a 7-day forecast
    cannot find a breach "within 90 days", so its High row says what makes a series high there."""
    risk = data.settings.risk
    horizon = forecast_horizon(data) or data.settings.forecast.horizon
    likely = f"likely = probability >= {risk.likely_probability:g}, whether or not the median forecast crosses"
    now = f"already breaching series ({rule_text(risk)}) are at least high"
    if risk.critical_days >= horizon:
        critical = (f"breach likely within the {horizon}-day forecast",
                    f"{likely}; the critical window ({_days(risk.critical_days)}) covers the whole forecast, "
                    "so this includes already breaching series whose forecast stays over the threshold")
        # "Forecast back under the threshold" read against Bitbrains VM 206: its median peaks at 78 % yet it is
        # critical, its breach probability 68 % (helper-50). The rule is the probability.
        high = (f"already breaching ({rule_text(risk)}), a new breach not likely within the forecast "
                f"(probability < {risk.likely_probability:g})",
                f"on a forecast this short every likely breach is critical; {now}")
    else:
        critical = (f"breach likely within {_days(risk.critical_days)}", likely)
        high = ((f"breach likely within {_days(risk.high_days)}", now) if risk.high_days <= horizon else
                (f"breach likely on days {risk.critical_days + 1}-{horizon} (the end of the forecast)",
                 f"the high window ({_days(risk.high_days)}) reaches past the forecast; {now}"))
    return [("Critical", *critical), ("High", *high),
            ("Medium", f"a breach on at least {_days(risk.medium_min_days)} within the {horizon}-day forecast has "
                       f"probability >= {risk.medium_probability:g}",
             "or the period-end analogue crosses the threshold (last year's peak, grown; under a year of history "
             "the month-end peaks of the last months); a breach likely only after the High window is medium "
             "however probable")]


def _coverage_row(data: ReportData) -> list[tuple[str, str, str]]:
    """The share of days resting on few samples (partial first and last days of an export, gaps): none
    without the raw daily rows."""
    if data.coverage is None or not data.coverage[1]:
        return []
    low, total = data.coverage
    share = data.settings.ingest.min_coverage
    return [("Sample coverage", f"{low:,} of {total:,} server-metric days under {share * 100:g} % of their samples",
             "partial first and last days of an export and gaps; such a day's P95 rests on few samples but is "
             "used like any other day" if low else "every day has most of its expected samples")]


def assumptions(data: ReportData) -> list[tuple[str, str, str]]:
    """The settings and data behind the numbers, as (assumption, value, note) rows."""
    s = data.settings
    risk, fc = s.risk, s.forecast
    overrides = ", ".join(f"{m} {v:g} %" for m, v in sorted(risk.metric_thresholds.items()))
    rows = [
        ("Breach threshold", f"{risk.threshold:g} % of capacity", f"per-metric overrides: {overrides or 'none'}"),
        ("Utilisation statistic", f"daily P{s.ingest.percentile:g}", "per server and metric, in percent of capacity"),
        *_coverage_row(data),
        _horizon_row(data),
        ("Forecast interval", f"{fc.interval:.0%} central interval", "the lower and upper bound of each forecast day"),
        *level_definitions(data),
        ("Sizing headroom", f"{risk.headroom:.0%} on top of the sizing peak",
         "the forecast upper bound, or a higher recurring or last-14-day peak; new sizes keep it under "
         f"{risk.target_utilisation:g} % utilisation"),
        ("Right-size rule", f"saves at least {risk.rightsize_min_savings:.0%} of the server's cost", ""),
        ("Consolidation", f"candidates peak under {risk.consolidation_candidate_max:g} %",
         f"hosts stay under {risk.consolidation_target:g} %, at most {risk.max_servers_per_host} workloads"),
        ("What-if growth", f"{risk.growth:+g} %", "risk.growth in the configuration; capfc risk --growth overrides it"),
    ]
    scenario = whatif_name(data)
    others = [n for n in scenario_names(data) if scenario is None or not scenario.startswith(n + ":")]
    rows.append(("Stored what-if", scenario or "none",
                 ("stored beside the base (the risk tables stay the base); base vs scenario in the What-if section"
                  + (f"; also stored: {', '.join(others)} (capfc report --scenario NAME)" if others else ""))
                 if scenario else not_available("risk_comparison")))
    inventory = data.table("inventory")
    costs = None if inventory is None else numeric(inventory, "monthly_cost_usd")
    if inventory is not None and costs is not None and costs.notna().any():
        # Only where the size is known too (helper-66: an inventory without memory read "$nan per GB of memory").
        per_core = (costs / numeric(inventory, "cpu_cores").clip(lower=1)).dropna()
        per_gb = (costs / numeric(inventory, "memory_gb").clip(lower=1)).dropna()
        medians = ", ".join([f"median {money(per_core.median())} per core" if len(per_core) else "no core counts",
                             f"${per_gb.median():,.2f} per GB of memory" if len(per_gb) else "no memory sizes"])
        priced = int(costs.notna().sum())
        unpriced = len(inventory) - priced
        known = (f"; {unpriced:,} of {plural(len(inventory), 'server')} {'has' if unpriced == 1 else 'have'} no cost"
                 if unpriced else "")
        rows.append(("Prices", f"{money(costs.sum())} per month for the priced servers",
                     f"from the inventory; {medians}{known}"))
    elif inventory is not None and len(inventory):
        rows.append(("Prices", "not available", "the inventory has no monthly_cost_usd: savings are unknown"))
    else:
        rows.append(("Prices", "not available", "inventory " + not_available("inventory")))
    if data.period is not None:
        first, last = data.period
        rows.append(("Data period", f"{first} to {last}", f"{(last - first).days + 1:,} days"))
    else:
        rows.append(("Data period", "not available", "metrics not available: run capfc etl"))
    latest: dict[str, dict[str, Any]] = {}
    for run in data.runs:
        latest[str(run.get("stage"))] = run
    # The report being written is not among the finished runs: an earlier report's run would read as this one.
    latest.pop("report", None)
    for stage, run in latest.items():
        rows.append((f"Last {stage} run", str(run.get("finished", ""))[:19].replace("T", " ") + " UTC",
                     f"run {run.get('run_id', '')}, {run.get('status', '')}, config {run.get('config_hash', '')}"))
    rows.append(("Report generated", data.generated.strftime("%Y-%m-%d %H:%M UTC"), f"lake {data.lake_uri}"))
    return rows


def fleet_text(data: ReportData) -> str:
    """``100 servers``, ``1 server``; ``(synthetic demonstration fleet)`` after it when ``capfc generate`` wrote
    the inventory (``capfc run`` on an empty lake, or a mistyped --lake), so no pack passes for real data."""
    inventory = data.table("inventory")
    if inventory is None:
        return "fleet"
    made_by = producing_run(data.runs, "inventory", data.versions.get("inventory"))
    synthetic = made_by is not None and made_by.get("stage") == "generate"
    return plural(len(inventory), "server") + (" (synthetic demonstration fleet)" if synthetic else "")


def data_period_text(data: ReportData) -> str:
    """``first to last`` of the observed data, or ``data period unknown``."""
    return "data period unknown" if data.period is None else f"{data.period[0]} to {data.period[1]}"


def stale_text(ranked: pd.DataFrame) -> str:
    """``; N stale servers not counted (no recent data)`` beside a count of servers at risk, or empty."""
    stale = stale_servers(ranked)
    return f"; {plural(stale, 'stale server')} not counted (no recent data)" if stale else ""


def data_age(data: ReportData) -> int | None:
    """Days from the last data day to when the report was made, where more than ``risk.stale_after_days`` (a
    pack rendered months after its export: "now" and every date in it are as of the last data day); else None."""
    if data.period is None:
        return None
    days = (data.generated.date() - data.period[1]).days
    return days if days > max(data.settings.risk.stale_after_days, 1) else None


def data_age_text(data: ReportData) -> str:
    """``data_age`` as a sentence for the packs; empty where the data are recent."""
    days = data_age(data)
    if days is None or data.period is None:
        return ""
    last = data.period[1]
    return (f"The data end on {last}, {_days(days)} before this report: \u201cnow\u201d, \u201calready "
            f"breaching\u201d and every date here are as of {last}.")


def extrapolation_text(data: ReportData) -> str:
    """A sentence when forecasts reach beyond the lead their backtests validated (``is_extrapolation``): how
    many series, and how far ahead the median one was validated. Empty otherwise."""
    if data.forecasts is None:
        return ""
    series = data.forecasts.series
    beyond = series["extrapolated_from"].notna()
    if not beyond.any():
        return ""
    validated = int((series.loc[beyond, "extrapolated_from"] - series.loc[beyond, "first"]).dt.days.median())
    horizon = int(series["days"].max())
    their = "its" if beyond.sum() == 1 else "their"
    if validated:
        checked = f"for the median one, the first {_days(validated)} of {horizon}"
    else:  # helper-44: "for the median one, none of the 7 days: too short ..." read garbled
        unchecked = int(((series.loc[beyond, "extrapolated_from"] - series.loc[beyond, "first"]).dt.days <= 0).sum())
        checked = (f"{unchecked:,} of them on no backtest at all: too short a history to check any of the "
                   f"{horizon} days")
    return (f"Forecasts of {int(beyond.sum()):,} of {plural(len(series), 'series', 'series')} reach beyond what "
            f"{their} history let the backtests check ({checked}): later days are extrapolation, with widened "
            "intervals, and breach dates there are less certain.")


def headlines(data: ReportData, ranked: pd.DataFrame) -> list[str]:
    """The executive summary's plain-English sentences, most urgent first: the data's age, servers already
    breaching, at risk and stale, the first breach, extrapolated forecasts, savings, unreviewed findings and
    the models' error (each only where it applies; typically four to seven)."""
    lines = []
    age = data_age_text(data)
    if age:
        lines.append(age)
    inventory = data.table("inventory")
    total = len(inventory) if inventory is not None else len(server_levels(ranked))
    if ranked.empty:
        lines.append("Breach risk is not available: run capfc risk.")
    else:
        counts = level_counts(ranked)
        at_risk = sum(counts[level] for level in AT_RISK_LEVELS)
        now = already_breaching(ranked)
        if len(now):
            cfg = data.settings.risk
            # Five named, or all six: "and 1 more" would hide the one a line could name.
            shown = 5 if len(now) > 6 else len(now)
            def over(r: Mapping[Any, Any]) -> str:
                # Under the day count, the series qualifies by its last observed day alone: say so (helper-50: the
                # demo's "srv-0009 cpu (1 day over)" beside a rule of ">= 3 of the last 14").
                days = int(r["days_over_recent"])
                last = (": its last observed day" if days == 1 else ", its last observed day among them")
                return _days(days) + " over" + (last if days < cfg.current_min_days_over else "")

            leading = now.head(shown).to_dict("records")
            named = examples((f"{r['server_id']} {r['metric']} ({over(r)})" for r in leading), shown, total=len(now))
            servers_now = int(now["server_id"].nunique())
            verb = "is" if servers_now == 1 else "are"
            lines.append(f"{plural(servers_now, 'server')} {verb} already breaching ({rule_text(cfg)}): "
                         f"{named}.")
        lines.append(f"{at_risk:,} of {plural(total, 'server')} {'is' if at_risk == 1 else 'are'} at risk of "
                     f"exceeding {'its' if at_risk == 1 else 'their'} capacity threshold "
                     f"({counts['critical']} critical, {counts['high']} high, {counts['medium']} medium).")
        stale = stale_servers(ranked)
        if stale:
            lines.append(f"{plural(stale, 'server')} {'is' if stale == 1 else 'are'} stale: data stopped more than "
                         f"{data.settings.risk.stale_after_days} days before the rest of the fleet's, or came back "
                         "for only a day or two since (levels as of their last data, nothing recommended; check "
                         "their monitoring).")
        lost = ranked[ranked["status"] == "no_data"] if "status" in ranked.columns else ranked.iloc[:0]
        if len(lost):
            # helper-72: fastStorage VMs whose every sample the ingest quarantined (no meta row, so no capacity)
            # were in no count and no table of the pack.
            lines.append(f"{len(lost):,} series {'has' if len(lost) == 1 else 'have'} no usable data (every day "
                         "or sample quarantined, or none delivered), so nothing could be assessed: " + examples(
                             (f"{r['server_id']} {r['metric']}" for r in lost.head(3).to_dict("records")),
                             total=len(lost)) + "; each one's reason is in the workbook's All series sheet, its rows "
                         "in the quarantine table.")
        first = live_risks(ranked).dropna(subset=["breach_ds"]).sort_values(["breach_ds", "server_id"]).head(1)
        for row in first.to_dict("records") if now.empty else []:
            names = ", ".join(str(row[c]) for c in ("hostname", "application") if says_something([row.get(c)]))
            named = f"{row['server_id']} ({names})" if names else str(row["server_id"])
            lines.append(f"First forecast breach: {named} {row['metric']} on "
                         f"{day(row['breach_ds'])}, {_days(int(row['days_to_breach']))} after the last observation.")
        if len(now):
            # Beside those breaching now, what breaches next and when (helper-69: the demo's ten forecast breaches
            # were first named on page 3).
            live = live_risks(ranked)
            coming = live[(live["status"] != ALREADY) & live["risk_level"].isin(AT_RISK_LEVELS)].dropna(
                subset=["breach_ds"]).sort_values(["breach_ds", "server_id"], kind="stable")
            if len(coming):
                lines.append("Next forecast breaches: " + examples(
                    (f"{r['server_id']} {r['metric']} on {day(r['breach_ds'])} (day {int(r['days_to_breach'])})"
                     for r in coming.head(3).to_dict("records")), total=len(coming)) + ".")
    extrapolation = extrapolation_text(data)
    if extrapolation:
        lines.append(extrapolation)
    recs = data.table("recommendations")
    if recs is None:
        lines.append("Right-sizing recommendations are not available: run capfc risk.")
    else:
        lines.append(savings_sentence(recs))
        lines.extend(_unreviewed(recs, ranked, data.settings.risk.min_history_days))
    chosen = chosen_models(data)
    if len(chosen) and chosen["mase"].notna().any():
        lines.append("Forecasts come from a model chosen per series on its backtests (the metric's default model "
                     "unless another is clearly more accurate); the median series' backtest error is "
                     f"{chosen['mase'].median():.2f} MASE (mean absolute error scaled by the in-sample error of "
                     "a weekly seasonal-naive forecast).")
    return lines


def _unreviewed(recs: pd.DataFrame, ranked: pd.DataFrame, min_days: int) -> list[str]:
    """Why servers were kept without a sizing review: no memory in the data (more data will not help), or
    histories shorter than ``min_days`` (it will). Stale servers have their own key message."""
    if "finding" not in recs.columns:
        return []
    thin = set(recs.loc[recs["finding"].eq("insufficient_data"), "server_id"])
    if len(ranked) and "status" in ranked.columns:
        thin -= set(ranked.loc[ranked["status"] == "stale", "server_id"])
    measured = set(ranked["server_id"]) if len(ranked) else set()
    # A memory series with no usable day (every one quarantined) is no memory utilisation: more data will not help.
    usable = ranked[ranked["status"] != "no_data"] if len(ranked) and "status" in ranked.columns else ranked
    with_memory = set(usable.loc[usable["metric"] == "memory", "server_id"]) if len(usable) else set()
    absent, blind, short = len(thin - measured), len((thin & measured) - with_memory), len(thin & with_memory)
    out = []
    if absent:
        out.append(f"{plural(absent, 'server')} of the inventory {'has' if absent == 1 else 'have'} no metrics in "
                   "the data: nothing could be assessed for " + ("it." if absent == 1 else "them."))
    if blind:
        out.append(f"{plural(blind, 'server')} {'is' if blind == 1 else 'are'} kept without a sizing review: "
                   f"the data have no memory utilisation for {'it' if blind == 1 else 'them'}, and sizing needs "
                   "both cpu and memory.")
    if short:
        out.append(f"{plural(short, 'server')} {'is' if short == 1 else 'are'} kept without a sizing review: cpu "
                   f"and memory are not both forecast on at least {min_days} days of history, so right-sizing, "
                   "consolidation and decommissioning wait for more data.")
    return out


def savings_sentence(recs: pd.DataFrame) -> str:
    """What the recommended actions save, net of upsizing; ``not priced`` (never $0) without monthly costs."""
    actions = recs["action"].value_counts()
    saving = {a: int(actions.get(a, 0)) for a in ("rightsize", "consolidate", "decommission")}
    parts = ", ".join(f"{n} {a}" for a, n in saving.items() if n) or "no rightsize, consolidation or decommission"
    upsizes = plural(int(actions.get("upsize", 0)), "upsize")
    by_action = savings_by_action(recs)
    if "upsize" in by_action.index:
        servers, priced_upsizes = by_action.loc["upsize", ["servers", "priced"]].to_numpy(dtype=np.int64)
        if priced_upsizes < servers:
            upsizes += f", {priced_upsizes:,} priced"  # the others cost an unknown amount more
    priced = priced_servers(recs)
    if not priced:
        counts = {str(a): int(n) for a, n in actions.items()}
        # What they free instead, where sizes are known (helper-69: Bitbrains' 7 cores and 24.6 GB were first said
        # on page 5).
        freed = [f"{total:,.0f} cores" if unit == "cores" else f"{total:,.1f} GB of memory"
                 for column, unit in (("freed_cpu_cores", "cores"), ("freed_memory_gb", "GB"))
                 if column in recs.columns and (total := float(np.nansum(numeric(recs, column)))) > 0]
        return (f"Recommended actions (servers): {actions_text(counts)}. Savings are not priced ({NO_PRICES})"
                + (f"; the rightsizes, consolidations and decommissions free {' and '.join(freed)} (before any "
                   "upsize)." if freed else "."))
    savings = numeric(recs, "monthly_savings").to_numpy(float)
    cost = float(np.nansum(numeric(recs, "current_monthly_cost").to_numpy(float)))
    net = float(np.nansum(savings))
    upsize = float(-np.nansum(np.where(savings < 0, savings, 0.0)))
    share = f" ({100 * net / cost:.1f} % of fleet cost)" if cost > 0 else ""
    scope = "" if priced == len(recs) else f" for the {priced:,} priced of {plural(len(recs), 'server')}"
    # Net of upsizing the actions can cost more than they save: "save -$493" read as a typo (helper-46).
    verb = f"save {money(net)}" if net >= 0 else f"cost {money(-net)} more"
    share = share.replace("(-", "(") if net < 0 else share  # "cost $493 more (9.9 % of fleet cost)"
    return (f"Recommended actions {verb} per month net{share}{scope}: {parts}; upsizing "
            f"({upsizes}) adds {money(upsize)} per month.")


