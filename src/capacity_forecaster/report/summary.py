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


def breach_when(row: Mapping[Any, Any]) -> tuple[str, str]:
    """(breach date, days) as the tables show them: ``now`` / ``0`` for a series already breaching."""
    if row.get("status") == ALREADY:
        return "now", "0"
    days = row.get("days_to_breach")
    return day(row.get("breach_ds")), "-" if days is None or pd.isna(days) else str(int(days))


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
    ranked = ranked_risks(data) if ranked is None else ranked
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
            out.append(Kpi("earliest_breach", "Earliest breach", None, "none",
                           f"no forecast crosses its threshold within {data.settings.forecast.horizon} days"))
        else:
            first = breaches.iloc[0]
            out.append(Kpi("earliest_breach", "Earliest breach", float(first["days_to_breach"]),
                           day(first["breach_ds"]), f"{first['server_id']} {first['metric']}, "
                                                    f"day {int(first['days_to_breach'])} of the forecast"))
    if recs is None:
        for key, label in (("fleet_cost", "Fleet cost per month"), ("net_savings", "Net savings per month"),
                           ("annual_savings", "Net savings per year")):
            out.append(Kpi(key, label, None, "-", "recommendations not available: run capfc risk"))
    else:
        cost = float(recs["current_monthly_cost"].sum())
        net = float(recs["monthly_savings"].sum())
        share = f"{100 * net / cost:.1f} % of fleet cost" if cost > 0 else ""
        acted = int((recs["action"] != "keep").sum())
        out.append(Kpi("fleet_cost", "Fleet cost per month", cost, money(cost), f"{len(recs)} servers priced"))
        out.append(Kpi("net_savings", "Net savings per month", net, money(net), share))
        out.append(Kpi("annual_savings", "Net savings per year", 12 * net, money(12 * net),
                       f"{acted} servers with an action"))
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
        series = forecasts.series
        days = int(series["days"].max())
        out.append(Kpi("horizon", "Forecast horizon", float(days), f"{days} days", f"to {day(series['last'].max())}"))
    return out


def assumptions(data: ReportData) -> list[tuple[str, str, str]]:
    """The settings and data behind the numbers, as (assumption, value, note) rows."""
    s = data.settings
    risk, fc = s.risk, s.forecast
    overrides = ", ".join(f"{m} {v:g} %" for m, v in sorted(risk.metric_thresholds.items()))
    rows = [
        ("Breach threshold", f"{risk.threshold:g} % of capacity", f"per-metric overrides: {overrides or 'none'}"),
        ("Utilisation statistic", f"daily P{s.ingest.percentile:g}", "per server and metric, in percent of capacity"),
        ("Forecast horizon", f"{fc.horizon} days", f"models: {fc.models}; {fc.backtest_windows} backtest windows"),
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
        known = f"; {unpriced} of {len(inventory)} servers have no cost" if unpriced else ""
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
            lines.append(f"{now['server_id'].nunique()} servers are already breaching ({rule_text(cfg)}): "
                         f"{named}{more}.")
        lines.append(f"{at_risk} of {total} servers are at risk of exceeding their capacity threshold "
                     f"({counts['critical']} critical, {counts['high']} high, {counts['medium']} medium).")
        first = ranked.dropna(subset=["breach_ds"]).sort_values(["breach_ds", "server_id"]).head(1)
        for row in first.to_dict("records") if now.empty else []:
            names = ", ".join(str(row[c]) for c in ("hostname", "application") if isinstance(row.get(c), str))
            lines.append(f"First forecast breach: {row['server_id']} ({names}) {row['metric']} on "
                         f"{day(row['breach_ds'])}, {int(row['days_to_breach'])} days after the last observation.")
    recs = data.table("recommendations")
    if recs is None:
        lines.append("Right-sizing recommendations are not available: run capfc risk.")
    else:
        actions = recs["action"].value_counts()
        cost = float(recs["current_monthly_cost"].sum())
        net = float(recs["monthly_savings"].sum())
        upsize = float(-recs.loc[recs["monthly_savings"] < 0, "monthly_savings"].sum())
        parts = [f"{int(actions.get(a, 0))} {a}" for a in ("rightsize", "consolidate", "decommission")]
        share = f" ({100 * net / cost:.1f} % of fleet cost)" if cost > 0 else ""
        lines.append(f"Recommended actions save {money(net)} per month net{share}: {', '.join(parts)}; "
                     f"{int(actions.get('upsize', 0))} upsizes add {money(upsize)} per month.")
    chosen = chosen_models(data)
    if len(chosen) and chosen["mase"].notna().any():
        lines.append("Forecasts come from the best backtested model per series; median error "
                     f"{chosen['mase'].median():.2f} MASE (mean absolute error scaled by the in-sample error of "
                     "a weekly seasonal-naive forecast).")
    return lines


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
