"""Figures every report shares: ranked risks, KPIs, model accuracy, the cluster map projection, assumptions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from capacity_forecaster.report.data import ReportData, not_available, scenario_names, whatif_name
from capacity_forecaster.risk.current import rule_text
from capacity_forecaster.risk.levels import LEVEL_LABELS, Status, level_codes, rank_risks

AT_RISK_LEVELS = ("critical", "high", "medium")
ALREADY = Status.ALREADY_BREACHING.value


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


def _numeric(frame: pd.DataFrame, name: str) -> pd.Series:
    """A column as numbers; all NaN where the column is absent (a sparse inventory)."""
    values = frame[name] if name in frame.columns else pd.Series(np.nan, index=frame.index)
    return pd.to_numeric(values, errors="coerce")


def _days(n: int) -> str:
    """``1 day``, ``2 days``."""
    return f"{n} day" if n == 1 else f"{n} days"


def plural(count: int, word: str, many: str | None = None) -> str:
    """``1 server``, ``2 servers``, ``1,200 servers`` (``many``: an irregular plural)."""
    return f"{count:,} {word if count == 1 else many or word + 's'}"


def cents(value: float) -> float:
    """Money rounded to cents (sums of float costs carry noise such as ``408964.0800000001``)."""
    return round(float(value), 2) + 0.0


# What every report says where the inventory has no monthly cost (never a $0 saving).
NOT_PRICED = "not priced"
NO_PRICES = "no monthly cost in the inventory"


def priced_servers(recs: pd.DataFrame) -> int:
    """Recommendations whose server has a monthly cost (the others' savings are unknown, not zero)."""
    return int(_numeric(recs, "current_monthly_cost").notna().sum())


def money(value: float | None, signed: bool = False) -> str:
    """US dollars without cents, e.g. ``$12,345`` (``+$1,200`` when signed)."""
    if value is None or pd.isna(value):
        return "-"
    sign = "-" if value < 0 else ("+" if signed and value > 0 else "")
    return f"{sign}${abs(value):,.0f}"


def day(value: Any) -> str:
    """An ISO date, or ``-`` for a missing one."""
    return "-" if value is None or pd.isna(value) else pd.Timestamp(value).date().isoformat()


def ranked_risks(data: ReportData) -> pd.DataFrame:
    """Every assessed series, riskiest first, with the server's names and recommended action.

    Order: already breaching first (most recent days over first), then risk level (critical
    first), days to breach (soonest first, none last), breach probability (highest first),
    server_id, metric.

    Returns:
        The server_risk columns plus level_code (3 critical ... 0 low, -1 unassessed),
        status_rank (0 already breaching), hostname,
        application, environment, action, monthly_savings, model (the chosen one) and mase (its
        mean backtest MASE) where those tables exist. Empty without server_risk.
    """
    risk = data.table("server_risk")
    if risk is None or risk.empty:
        return pd.DataFrame(columns=["server_id", "metric", "risk_level", "level_code"])
    status = risk["status"] if "status" in risk.columns else pd.Series("assessed", index=risk.index)
    over = risk["days_over_recent"] if "days_over_recent" in risk.columns else pd.Series(0, index=risk.index)
    # Already breaching before everything else; the other statuses sort by level like assessed series.
    out = risk.assign(level_code=level_codes(risk["risk_level"]), status=status,
                      status_rank=np.where(status == ALREADY, 0, 1), days_over_recent=over.fillna(0).astype(int))
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


def breach_when(row: Mapping[Any, Any]) -> tuple[str, str]:
    """(breach date, days) as the tables show them: ``now`` / ``0`` for a series already breaching."""
    if row.get("status") == ALREADY:
        return "now", "0"
    days = row.get("days_to_breach")
    return day(row.get("breach_ds")), "-" if days is None or pd.isna(days) else str(int(days))


def breach_phrase(row: Mapping[Any, Any], with_day: bool = False) -> str:
    """A series' breach in words: ``already breaching (last over 2026-06-30)``, ``breach 2026-07-31`` (``, day 31``
    with ``with_day``), or ``no breach forecast in the horizon``."""
    breach = row.get("breach_ds")
    if row.get("status") == ALREADY:
        last = row.get("last_over_ds", breach)
        return "already breaching" + ("" if last is None or pd.isna(last) else f" (last over {day(last)})")
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


def server_levels(ranked: pd.DataFrame) -> pd.DataFrame:
    """The worst series of every server (``ranked_risks`` is ordered, so the first row per server)."""
    return ranked.drop_duplicates("server_id", keep="first").reset_index(drop=True)


def level_counts(ranked: pd.DataFrame) -> dict[str, int]:
    """Servers per worst risk level, critical first (servers without an assessment left out)."""
    worst = server_levels(ranked)
    counts = worst["risk_level"].value_counts()
    return {level: int(counts.get(level, 0)) for level in reversed(LEVEL_LABELS)}


def model_accuracy(backtests: pd.DataFrame | None) -> pd.DataFrame:
    """Backtest accuracy by model across all series and cutoffs, best median MASE first.

    Returns:
        model, series, median_mase, median_mape, median_mae, mean_coverage, selected (series
        whose forecast uses the model). Empty without backtests.
    """
    cols = ["model", "series", "median_mase", "median_mape", "median_mae", "mean_coverage", "selected"]
    if backtests is None or backtests.empty:
        return pd.DataFrame(columns=cols)
    keyed = backtests.assign(series=backtests["server_id"].astype(str) + "|" + backtests["metric"].astype(str))
    out = keyed.groupby("model").agg(
        series=("series", "nunique"), median_mase=("mase", "median"), median_mape=("mape", "median"),
        median_mae=("mae", "median"), mean_coverage=("coverage", "mean"))
    selected = keyed[keyed["selected"].astype(bool)].groupby("model")["series"].nunique()
    out["selected"] = selected.reindex(out.index).fillna(0).astype(int)
    return out.sort_values("median_mase", na_position="last").reset_index()[cols]


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


def cluster_ringed(ranked: pd.DataFrame) -> set[str]:
    """Servers ringed on the cluster map: critical or high risk in the plotted metric (``CLUSTER_METRIC``)."""
    if ranked.empty:
        return set()
    hot = ranked[(ranked["level_code"] >= 2) & (ranked["metric"] == CLUSTER_METRIC)]
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
    peak = (profiles["cpu_p99"] if "cpu_p99" in profiles.columns else profiles["cpu_p95"]).astype(float)
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
        out.append(Kpi("critical", "Critical servers", None, "-",
                       f"breach likely within {data.settings.risk.critical_days} days"))
        out.append(Kpi("already_breaching", "Already breaching", None, "-", "risk not available: run capfc risk"))
        out.append(Kpi("earliest_breach", "Earliest breach", None, "-"))
    else:
        counts = level_counts(ranked)
        at_risk = sum(counts[level] for level in AT_RISK_LEVELS)
        cfg = data.settings.risk
        now = already_breaching(ranked)
        servers_now = int(now["server_id"].nunique())
        rule = rule_text(cfg)
        out.append(Kpi("already_breaching", "Already breaching", servers_now, f"{servers_now:,}", rule))
        out.append(Kpi("at_risk", "Servers at risk", at_risk, f"{at_risk:,}",
                       f"{counts['critical']} critical, {counts['high']} high, {counts['medium']} medium"))
        out.append(Kpi("critical", "Critical servers", counts["critical"], f"{counts['critical']:,}",
                       f"breach likely within {cfg.critical_days} days"))
        breaches = ranked.dropna(subset=["breach_ds"]).sort_values(["breach_ds", "server_id"])
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
            cost = cents(np.nansum(_numeric(recs, "current_monthly_cost").to_numpy(float)))
            net = cents(np.nansum(_numeric(recs, "monthly_savings").to_numpy(float)))
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
        out.append(Kpi("accuracy", "Forecast error (MASE)", None, "-", "backtests not available: run capfc forecast"))
    else:
        mase = float(chosen["mase"].median())
        out.append(Kpi("accuracy", "Forecast error (MASE)", mase, f"{mase:.2f}",
                       "median of the chosen models; below 1 beats a weekly seasonal-naive forecast in-sample"))
    period = data.period
    out.append(Kpi("data_period", "Data period", None if period is None else float((period[1] - period[0]).days + 1),
                   "-" if period is None else f"{period[0]} to {period[1]}",
                   "" if period is None else f"{(period[1] - period[0]).days + 1:,} days of daily P95"))
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
    configured = "" if horizon == fc.horizon else f"; forecast.horizon in the configuration: {_days(fc.horizon)}"
    return "Forecast horizon", _days(horizon), f"of the forecasts in the lake{configured}; {models}"


def assumptions(data: ReportData) -> list[tuple[str, str, str]]:
    """The settings and data behind the numbers, as (assumption, value, note) rows."""
    s = data.settings
    risk, fc = s.risk, s.forecast
    overrides = ", ".join(f"{m} {v:g} %" for m, v in sorted(risk.metric_thresholds.items()))
    rows = [
        ("Breach threshold", f"{risk.threshold:g} % of capacity", f"per-metric overrides: {overrides or 'none'}"),
        ("Utilisation statistic", f"daily P{s.ingest.percentile:g}", "per server and metric, in percent of capacity"),
        _horizon_row(data),
        ("Forecast interval", f"{fc.interval:.0%} central interval", "the lower and upper bound of each forecast day"),
        ("Critical", f"breach likely within {risk.critical_days} days",
         f"likely = probability >= {risk.likely_probability:g}"),
        ("High", f"breach likely within {risk.high_days} days", ""),
        ("Medium", f"breach probability >= {risk.medium_probability:g} within the horizon",
         "or last year's period-end peak, grown, crosses the threshold"),
        ("Sizing headroom", f"{risk.headroom:.0%} on top of the forecast peak upper bound",
         f"new sizes keep it under {risk.target_utilisation:g} % utilisation"),
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
    costs = None if inventory is None else _numeric(inventory, "monthly_cost_usd")
    if inventory is not None and costs is not None and costs.notna().any():
        per_core = (costs / _numeric(inventory, "cpu_cores").clip(lower=1)).median()
        per_gb = (costs / _numeric(inventory, "memory_gb").clip(lower=1)).median()
        priced = int(costs.notna().sum())
        unpriced = len(inventory) - priced
        known = (f"; {unpriced:,} of {plural(len(inventory), 'server')} {'has' if unpriced == 1 else 'have'} no cost"
                 if unpriced else "")
        rows.append(("Prices", f"{money(costs.sum())} per month for the priced servers",
                     f"from the inventory; median {money(per_core)} per core, ${per_gb:,.2f} per GB of memory{known}"))
    elif inventory is not None and len(inventory):
        rows.append(("Prices", "not available", "the inventory has no monthly_cost_usd: savings are unknown"))
    else:
        rows.append(("Prices", "not available", "inventory not available: run capfc generate (or capfc ingest)"))
    if data.period is not None:
        first, last = data.period
        rows.append(("Data period", f"{first} to {last}", f"{(last - first).days + 1:,} days"))
    else:
        rows.append(("Data period", "not available", "metrics not available: run capfc etl"))
    latest: dict[str, dict[str, Any]] = {}
    for run in data.runs:
        latest[str(run.get("stage"))] = run
    for stage, run in latest.items():
        rows.append((f"Last {stage} run", str(run.get("finished", ""))[:19].replace("T", " ") + " UTC",
                     f"run {run.get('run_id', '')}, {run.get('status', '')}, config {run.get('config_hash', '')}"))
    rows.append(("Report generated", data.generated.strftime("%Y-%m-%d %H:%M UTC"), f"lake {data.lake_uri}"))
    return rows


def data_period_text(data: ReportData) -> str:
    """``first to last`` of the observed data, or ``data period unknown``."""
    return "data period unknown" if data.period is None else f"{data.period[0]} to {data.period[1]}"


def headlines(data: ReportData, ranked: pd.DataFrame) -> list[str]:
    """Three to four plain-English sentences for the executive summary."""
    lines = []
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
            named = ", ".join(f"{r['server_id']} {r['metric']} ({_days(int(r['days_over_recent']))} over)"
                              for r in now.head(5).to_dict("records"))
            more = f" and {len(now) - 5} more" if len(now) > 5 else ""
            servers_now = int(now["server_id"].nunique())
            verb = "is" if servers_now == 1 else "are"
            lines.append(f"{plural(servers_now, 'server')} {verb} already breaching ({rule_text(cfg)}): "
                         f"{named}{more}.")
        lines.append(f"{at_risk:,} of {plural(total, 'server')} {'is' if at_risk == 1 else 'are'} at risk of "
                     "exceeding their capacity threshold "
                     f"({counts['critical']} critical, {counts['high']} high, {counts['medium']} medium).")
        first = ranked.dropna(subset=["breach_ds"]).sort_values(["breach_ds", "server_id"]).head(1)
        for row in first.to_dict("records") if now.empty else []:
            names = ", ".join(str(row[c]) for c in ("hostname", "application") if isinstance(row.get(c), str))
            lines.append(f"First forecast breach: {row['server_id']} ({names}) {row['metric']} on "
                         f"{day(row['breach_ds'])}, {_days(int(row['days_to_breach']))} after the last observation.")
    recs = data.table("recommendations")
    if recs is None:
        lines.append("Right-sizing recommendations are not available: run capfc risk.")
    else:
        lines.append(savings_sentence(recs))
    chosen = chosen_models(data)
    if len(chosen) and chosen["mase"].notna().any():
        lines.append("Forecasts come from the best backtested model per series; median error "
                     f"{chosen['mase'].median():.2f} MASE (mean absolute error scaled by the in-sample error of "
                     "a weekly seasonal-naive forecast).")
    return lines


def savings_sentence(recs: pd.DataFrame) -> str:
    """What the recommended actions save, net of upsizing; ``not priced`` (never $0) without monthly costs."""
    actions = recs["action"].value_counts()
    parts = ", ".join(f"{int(actions.get(a, 0))} {a}" for a in ("rightsize", "consolidate", "decommission"))
    upsizes = plural(int(actions.get("upsize", 0)), "upsize")
    priced = priced_servers(recs)
    if not priced:
        return f"Recommended actions: {parts}; {upsizes}. Savings are not priced ({NO_PRICES})."
    savings = _numeric(recs, "monthly_savings").to_numpy(float)
    cost = float(np.nansum(_numeric(recs, "current_monthly_cost").to_numpy(float)))
    net = float(np.nansum(savings))
    upsize = float(-np.nansum(np.where(savings < 0, savings, 0.0)))
    share = f" ({100 * net / cost:.1f} % of fleet cost)" if cost > 0 else ""
    scope = "" if priced == len(recs) else f" for the {priced:,} priced of {plural(len(recs), 'server')}"
    return (f"Recommended actions save {money(net)} per month net{share}{scope}: {parts}; upsizing "
            f"({upsizes}) adds {money(upsize)} per month.")


def risk_row(ranked: pd.DataFrame, server: str, metric: str) -> dict[str, Any]:
    """The ``ranked_risks`` row of one series as a plain dict (empty when the series has none)."""
    match = ranked[(ranked["server_id"] == server) & (ranked["metric"] == metric)] if len(ranked) else ranked
    return {str(k): v for k, v in match.iloc[0].items()} if len(match) else {}


def level_of(row: dict[str, Any]) -> str:
    """The risk level of a ``risk_row``, or ``unassessed``."""
    level = row.get("risk_level")
    return level if isinstance(level, str) else "unassessed"


def threshold_of(row: dict[str, Any], data: ReportData, metric: str) -> float:
    """The breach threshold of a ``risk_row`` (the risk stage's own column, else the configured one)."""
    value = row.get("threshold")
    return float(value) if value is not None and not pd.isna(value) else data.settings.risk.threshold_for(metric)
