"""The risk stage as one pure function: breaches, clusters, recommendations, summary and what-if comparison."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from capacity_forecaster.config import RiskConfig
from capacity_forecaster.risk.calibration import BreachCalibration, empty_table
from capacity_forecaster.risk.capacity import capacity_by_group
from capacity_forecaster.risk.current import mark_stale, rule_text
from capacity_forecaster.risk.evidence import Assessment, assess, observe
from capacity_forecaster.risk.levels import (
    LEVEL_LABELS,
    Status,
    actions_text,
    level_codes,
    likely_first,
    money,
    percent,
    rank_risks,
    stale_words,
    without_stale,
)
from capacity_forecaster.risk.options import findings, saturated_metrics, sizing_options
from capacity_forecaster.risk.recommendations import build_recommendations
from capacity_forecaster.risk.scenarios import ScenarioOutcome, comparison_lines
from capacity_forecaster.risk.sizing import CostModel, size_gb
from capacity_forecaster.risk.whatif import Scenario
from capacity_forecaster.schema import (
    CAPACITY_GROUP_COLUMNS,
    METRIC,
    RECOMMENDATION_OPTION_COLUMNS,
    SERVER_ID,
)

logger = logging.getLogger(__name__)

COMPARISON_COLUMNS = (
    SERVER_ID, METRIC, "base_risk_level", "scenario_risk_level", "base_breach_ds", "scenario_breach_ds",
    "base_days_to_breach", "scenario_days_to_breach", "base_breach_probability", "scenario_breach_probability",
    "base_action", "scenario_action", "base_monthly_savings", "scenario_monthly_savings", "change",
)
_AT_RISK_SHOWN = 15


@dataclass(frozen=True)
class RiskResult:
    """Everything the risk stage produces.

    Attributes:
        server_risk: one row per (server_id, metric); contract columns then status, threshold,
            breach_upper_ds, days_to_upper_breach, likely_breach_ds, peak_upper, horizon_days,
            history_days, last_observed, seasonal_peak, reason (``breach.assess_breaches``).
        clusters: server_id, cluster_id, cluster_label, silhouette.
        recommendations: one row per server; contract columns (whole cores and GB) then needed_by,
            current_cpu_cores, current_memory_gb, evidence, finding (``options.Finding``),
            freed_cpu_cores, freed_memory_gb (what a decommission, consolidation or right-size frees).
        summary: counts, at-risk servers with dates, the earliest breach, clusters, savings
            (JSON-serialisable).
        scenario: the what-if evaluated beside the base (``scenarios.ScenarioOutcome``: its own
            server_risk, clusters, recommendations, summary and the comparison); None without one.
            The tables above always describe the base.
        options: the ``recommendation_options`` table: up to ``max_options`` ranked sizing options per
            server (``options.sizing_options``).
        capacity: the ``capacity_by_group`` table: capacity remaining per datacenter, environment and
            application (``capacity.capacity_by_group``).
        calibration: the ``risk_calibration`` table: reliability of breach probabilities computed at
            the forecast backtest cutoffs (``calibration.calibrate_breaches``); empty without backtests.
    """

    server_risk: pd.DataFrame
    clusters: pd.DataFrame
    recommendations: pd.DataFrame
    summary: dict[str, Any]
    scenario: ScenarioOutcome | None = None
    calibration: pd.DataFrame = field(default_factory=empty_table)
    options: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(RECOMMENDATION_OPTION_COLUMNS)))
    capacity: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(CAPACITY_GROUP_COLUMNS)))

    @property
    def comparison(self) -> pd.DataFrame:
        """Base vs what-if per (server_id, metric), ``COMPARISON_COLUMNS``; empty without a what-if."""
        if self.scenario is None:
            return pd.DataFrame(columns=list(COMPARISON_COLUMNS))
        return self.scenario.comparison


def _iso(day: Any) -> str | None:
    return None if pd.isna(day) else pd.Timestamp(day).date().isoformat()


def _summary(server_risk: pd.DataFrame, clusters: pd.DataFrame, recs: pd.DataFrame, label: str,
             cfg: RiskConfig) -> dict[str, Any]:
    # Most urgent first, as every summary lists them.
    ranked = server_risk.assign(code=level_codes(server_risk["risk_level"]))
    # A stale series' level is as of data that ended long ago: listed (last), never counted at risk now, nor
    # among the levels (helper-45: "critical 700" in the CLI beside the packs' 600 critical servers).
    live = without_stale(ranked)
    levels = live["risk_level"].value_counts().reindex(list(LEVEL_LABELS)[::-1], fill_value=0)
    # The one ranking (levels.RISK_ORDER): status, level, days over, breach date, probability.
    at_risk = rank_risks(ranked[ranked["code"] > 0])
    live_at_risk = without_stale(at_risk)
    breaching = ranked[ranked["status"] == Status.ALREADY_BREACHING.value]
    # "now" when a series is already breaching (the first at-risk row), else the first forecast crossing.
    first = (at_risk if len(breaching) else live.dropna(subset=["breach_ds"]).sort_values(
        ["breach_ds", SERVER_ID, METRIC])).head(1).to_dict("records")
    earliest = ({"ds": "now" if len(breaching) else _iso(first[0]["breach_ds"]), "server_id": first[0][SERVER_ID],
                 "metric": first[0][METRIC]} if first else None)
    fleet_cost = float(np.nansum(recs["current_monthly_cost"].to_numpy(float)))
    savings = recs["monthly_savings"].to_numpy(float)
    gross = float(np.nansum(savings[savings > 0]))
    net = float(np.nansum(savings))
    return {
        "scenario": label,
        "servers": int(recs[SERVER_ID].nunique()),
        "series": int(len(server_risk)),
        "series_by_status": {str(k): int(v) for k, v in server_risk["status"].value_counts().items()},
        "series_by_level": {str(k): int(v) for k, v in levels.items()},
        "servers_at_risk": int(live_at_risk[SERVER_ID].nunique()),
        "servers_already_breaching": int(breaching[SERVER_ID].nunique()),
        "servers_stale": int(server_risk.loc[server_risk["status"] == Status.STALE.value, SERVER_ID].nunique()),
        "series_stale": int((server_risk["status"] == Status.STALE.value).sum()),
        "earliest_breach": earliest,
        "at_risk": [
            {"server_id": r[SERVER_ID], "metric": r[METRIC], "risk_level": r["risk_level"], "status": r["status"],
             "days_over_recent": int(r["days_over_recent"]), "threshold": float(r["threshold"]),
             "breach_ds": _iso(r["breach_ds"]), "last_observed": _iso(r.get("last_observed")),
             "stale_since": _iso(r.get("stale_since")), "raw_last_observed": _iso(r.get("raw_last_observed")),
             "days_to_breach": None if pd.isna(r["days_to_breach"]) else int(r["days_to_breach"]),
             # Unrounded: every output formats it once (levels.percent).
             "breach_probability": None if pd.isna(r["breach_probability"]) else float(r["breach_probability"]),
             "seasonal_peak": r["seasonal_peak"],
             "analogue_breach_ds": _iso(r["analogue_breach_ds"]), "breach_upper_ds": _iso(r["breach_upper_ds"]),
             "likely_breach_ds": _iso(r.get("likely_breach_ds"))}
            for r in at_risk.head(_AT_RISK_SHOWN).to_dict("records")
        ],
        "clusters": {str(k): int(v) for k, v in clusters["cluster_label"].value_counts().sort_index().items()},
        "k": int(clusters.attrs.get("k", clusters["cluster_id"].nunique() if len(clusters) else 0)),
        "actions": {str(k): int(v) for k, v in recs["action"].value_counts().sort_index().items()},
        "fleet_monthly_cost": round(fleet_cost, 2),
        "gross_monthly_savings": round(gross, 2),
        "upsize_monthly_cost": round(float(-savings[savings < 0].sum()), 2) + 0.0,
        "net_monthly_savings": round(net, 2),
        "net_savings_pct": round(100.0 * net / fleet_cost, 4) if fleet_cost > 0 else 0.0,
        "servers_without_cost": int(recs["current_monthly_cost"].isna().sum()),
        "current_window_days": cfg.current_window_days,
        "current_min_days_over": cfg.current_min_days_over,
        "current_rule": rule_text(cfg),
        "stale_after_days": cfg.stale_after_days,
    }


def evaluate(
    metrics: pd.DataFrame, forecasts: pd.DataFrame, inventory: pd.DataFrame, cfg: RiskConfig,
    clusters: pd.DataFrame, label: str = "base", calibration: BreachCalibration | None = None,
) -> RiskResult:
    """Breaches and recommendations for one set of inputs, with clusters given.

    Args:
        metrics: processed metrics.
        forecasts: forecasts (already uplifted for a what-if).
        inventory: inventory.
        cfg: risk settings.
        clusters: ``clustering.cluster_servers`` output for these servers.
        label: scenario name for the summary.
        calibration: the correction of breach probabilities (fitted correlation, monotone map) and
            its summary; None uses ``cfg`` as it is.

    Returns:
        RiskResult without comparison.
    """
    part = assess(observe(metrics, forecasts, cfg), forecasts, inventory, cfg, calibration)
    return conclude(part, inventory, cfg, clusters, label, calibration)


def conclude(part: Assessment, inventory: pd.DataFrame, cfg: RiskConfig, clusters: pd.DataFrame,
             label: str = "base", calibration: BreachCalibration | None = None,
             prices: CostModel | None = None, planned: frozenset[str] = frozenset()) -> RiskResult:
    """The fleet-wide half of ``evaluate``: recommendations, options, capacity and summary from the assessment.

    Args:
        part: the fleet's assessment (``evidence.combine`` of its chunks').
        inventory: the completed inventory of the fleet.
        cfg, clusters, label, calibration: as for ``evaluate``.
        prices: the cost model (default: fitted on ``inventory``; a scenario passes the base fleet's).
        planned: the servers a scenario adds (``recommendations.build_recommendations``).

    Returns:
        RiskResult without comparison.
    """
    server_risk, needs = mark_stale(part.server_risk, cfg), part.needs
    prices = prices or CostModel.fit(inventory)
    recs = build_recommendations(server_risk, needs, part.idle, part.packing, inventory, cfg, prices, planned)
    recs["finding"] = findings(recs, server_risk, cfg, needs)
    options = sizing_options(recs, needs, inventory, cfg, saturated_metrics(server_risk), prices)
    # Sizes are whole cores and GB to one decimal (a sub-GB VM is not sized 0 GB); what a decommission,
    # consolidation or right-size frees is shown, not zeros.
    for column, today in (("recommended_cpu_cores", "current_cpu_cores"), ("recommended_memory_gb",
                                                                           "current_memory_gb")):
        freed = np.fmax(recs[today].to_numpy(float) - recs[column].to_numpy(float), 0.0)
        size = recs[column].to_numpy(float)
        if column.endswith("_gb"):
            recs["freed_" + today.removeprefix("current_")] = size_gb(freed)
            recs[column] = size_gb(size)
            # Today's size as the recommended one reads (Bitbrains VM 333's memory, kept at 3.88 GB, read as
            # an upsize to 3.9 GB beside it); the inventory keeps the exact figure.
            recs[today] = size_gb(recs[today].to_numpy(float))
        else:
            recs["freed_" + today.removeprefix("current_")] = pd.array(np.round(freed), dtype="Int64")
            recs[column] = pd.array(np.round(size), dtype="Int64")
    summary = _summary(server_risk, clusters, recs, label, cfg)
    summary["findings"] = {str(k): int(v) for k, v in recs["finding"].value_counts().sort_index().items()}
    if calibration is not None:
        summary["calibration"] = calibration.summary
    return RiskResult(server_risk, clusters, recs, summary, options=options,
                      capacity=capacity_by_group(server_risk, recs, inventory),
                      calibration=calibration.table if calibration is not None else empty_table())


def compare(base: RiskResult, what_if: RiskResult) -> pd.DataFrame:
    """Base vs what-if, one row per (server_id, metric) present in either.

    Returns:
        ``COMPARISON_COLUMNS``; change is ``added``, ``removed``, ``worse`` (higher level or an
        earlier breach), ``better`` or ``unchanged``; monthly savings are null where the server has no monthly
        cost.
    """
    cols = ["risk_level", "breach_ds", "days_to_breach", "breach_probability"]
    left = base.server_risk[[SERVER_ID, METRIC, *cols]].rename(columns={c: f"base_{c}" for c in cols})
    right = what_if.server_risk[[SERVER_ID, METRIC, *cols]].rename(columns={c: f"scenario_{c}" for c in cols})
    out = left.merge(right, on=[SERVER_ID, METRIC], how="outer", indicator=True)
    for side, result in (("base", base), ("scenario", what_if)):
        recs = result.recommendations.set_index(SERVER_ID)
        out[f"{side}_action"] = out[SERVER_ID].map(recs["action"])
        # Unknown where the server has no monthly cost, keep included (a kept server's 0 read "$0" beside "not
        # priced" everywhere else: helper-73).
        out[f"{side}_monthly_savings"] = out[SERVER_ID].map(recs["monthly_savings"].where(
            recs["current_monthly_cost"].notna()))
    b, s = level_codes(out["base_risk_level"]), level_codes(out["scenario_risk_level"])
    bd = out["base_days_to_breach"].astype("Float64").fillna(np.inf).to_numpy(float)
    sd = out["scenario_days_to_breach"].astype("Float64").fillna(np.inf).to_numpy(float)
    out["change"] = np.select(
        [out["_merge"].eq("right_only").to_numpy(), out["_merge"].eq("left_only").to_numpy(),
         (s > b) | ((s == b) & (sd < bd)), (s < b) | ((s == b) & (sd > bd))],
        ["added", "removed", "worse", "better"], default="unchanged")
    return out[list(COMPARISON_COLUMNS)].sort_values([SERVER_ID, METRIC]).reset_index(drop=True)


def run_risk(
    metrics: pd.DataFrame,
    forecasts: pd.DataFrame,
    inventory: pd.DataFrame,
    cfg: RiskConfig,
    *,
    growth: float | None = None,
    scenario: Scenario | None = None,
    backtests: pd.DataFrame | None = None,
    name: str | None = None,
) -> RiskResult:
    """The whole risk stage over frames (pure: no I/O): ``streaming.stream_risk`` with the fleet as one chunk.

    Clusters come from the base history. The returned tables always describe the base; a what-if
    (``growth`` != 0 or a scenario) is evaluated beside it into ``result.scenario`` (added servers
    join their template's cluster) and never replaces it.

    Args:
        metrics: processed metrics (server_id, ds, metric, value, optional is_imputed,
            is_anomaly, is_outlier).
        forecasts: ``schema.FORECAST_COLUMNS``.
        inventory: server_id; every other ``schema.INVENTORY_COLUMNS`` column is optional
            (``inventory.complete_inventory``), and servers with metrics but no inventory row get one.
        cfg: risk settings.
        growth: growth uplift in percent; None uses the scenario's growth, else ``cfg.growth``.
        scenario: a validated scenario (``whatif.load_scenario``).
        name: the name to store the what-if under; None derives it (``scenarios.scenario_name``).
        backtests: the forecast stage's ``backtest_forecasts`` (``schema.BACKTEST_FORECAST_COLUMNS``):
            breach probabilities are checked against them and, as ``cfg`` allows, corrected
            (``calibration.calibrate_breaches``); None skips the check (the summary says so).

    Returns:
        RiskResult (see its attributes for the columns).
    """
    from capacity_forecaster.risk.streaming import FrameSource, stream_risk

    return stream_risk(FrameSource(metrics, forecasts, backtests), inventory, cfg, growth=growth, scenario=scenario,
                       name=name)


def with_what_if(base: RiskResult, what_if: RiskResult, name: str, what_clusters: pd.DataFrame,
                 parameters: dict[str, Any]) -> RiskResult:
    """The base result with a what-if evaluated beside it (``result.scenario``, with the comparison)."""
    outcome = ScenarioOutcome(name, what_if.summary["scenario"], what_if.server_risk, what_clusters,
                              what_if.recommendations, what_if.summary, compare(base, what_if), parameters)
    return RiskResult(base.server_risk, base.clusters, base.recommendations, base.summary, outcome,
                      calibration=base.calibration, options=base.options, capacity=base.capacity)


def log_summary(summary: dict[str, Any], started: float) -> None:
    """The stage's one INFO line."""
    levels = ", ".join(f"{count} {level}" for level, count in summary["series_by_level"].items())
    stale = summary.get("series_stale") or 0
    levels = (levels or "none") + (f"; {stale} stale aside" if stale else "")
    logger.info("risk: %d servers, %d series (%s), %d at risk, k=%d clusters, %s in %.1f s",
                summary["servers"], summary["series"], levels, summary["servers_at_risk"], summary["k"],
                savings_text(summary), time.perf_counter() - started)


def savings_text(summary: dict[str, Any]) -> str:
    """"net savings $34,080/month (30.3 % of $112,656)", or why there is no number (nothing priced)."""
    cost = float(summary.get("fleet_monthly_cost") or 0.0)
    if cost <= 0:
        return "net savings not priced (no monthly cost in the inventory)"
    net = float(summary["net_monthly_savings"])
    return f"net savings {money(net)}/month ({100.0 * net / cost:.1f} % of {money(cost)})"


def carry_clusters(clusters: pd.DataFrame, inventory: pd.DataFrame, templates: dict[str, str]) -> pd.DataFrame:
    """Base clusters for the servers left after a scenario; an added server joins its template's cluster."""
    kept = clusters[clusters[SERVER_ID].isin(inventory[SERVER_ID])]
    if not templates:
        out = kept.reset_index(drop=True)
    else:
        joined = clusters.set_index(SERVER_ID).reindex(list(templates.values())).reset_index(drop=True)
        joined.insert(0, SERVER_ID, list(templates))
        out = pd.concat([kept, joined.dropna(subset=["cluster_id"])], ignore_index=True)
        out["cluster_id"] = out["cluster_id"].astype(np.int64)
    out.attrs.update(clusters.attrs)
    return out


def render_summary(result: RiskResult) -> str:
    """The one-screen text summary of a risk run (the CLI prints it)."""
    s = result.summary
    lines = [f"Risk ({s['scenario']}): {s['servers']} servers, {s['series']} series; "
             + ("stale ones aside, " if s.get("series_stale") else "")
             + ", ".join(f"{k} {v}" for k, v in s["series_by_level"].items())]
    lines.append(f"Already breaching: {s.get('servers_already_breaching', 0)} servers ({s.get('current_rule', '')})")
    lines.append(f"At risk: {s['servers_at_risk']} servers")
    if s.get("servers_stale"):
        lines.append(f"Stale: {s['servers_stale']} servers whose data stopped more than "
                     f"{s.get('stale_after_days', '')} days before the latest day of the servers monitored with them "
                     "(or came back for only a day or two since): levels as of their last data, nothing recommended; "
                     "check their monitoring")
    for r in s["at_risk"]:
        now = r.get("status") == Status.ALREADY_BREACHING.value
        when = (f"already breaching: over {r['threshold']:g} % on {r['days_over_recent']} of the last "
                f"{s.get('current_window_days', '')} observed days" if now else
                stale_words(r)
                if r.get("status") == Status.STALE.value else
                f"breach likely by {r['likely_breach_ds']} (median crosses {r['breach_ds']})"
                if r["breach_ds"] and likely_first(r) else
                f"breach {r['breach_ds']} (day {r['days_to_breach']})" if r["breach_ds"] else
                f"breach likely by {r['likely_breach_ds']} (median stays under)" if r.get("likely_breach_ds") else
                f"last year's peak, grown, crosses {r['analogue_breach_ds']}" if r["analogue_breach_ds"] else
                f"upper bound crosses {r['breach_upper_ds']}" if r["breach_upper_ds"] else "breach possible")
        peak = f" at {r['seasonal_peak']}" if r["seasonal_peak"] else ""
        prob = "" if r["breach_probability"] is None else f", P={percent(r['breach_probability'])}"
        lines.append(f"  {r['risk_level']:<8} {r['server_id']} {r['metric']:<7} {when}{peak}{prob}")
    lines.append(f"Workload clusters ({s['k']}): {clusters_text(s['clusters'])}")
    lines.append("Recommended actions (servers): " + actions_text(s["actions"]))
    if s.get("servers_without_cost"):
        lines.append(f"Savings: unknown for {s['servers_without_cost']} servers without a monthly cost in the "
                     "inventory (savings null); the figures below cover the priced servers")
    lines.append(f"Savings: {s['net_monthly_savings']:,.0f}/month net ({s['net_savings_pct']:.1f} % of "
                 f"{s['fleet_monthly_cost']:,.0f}); gross {s['gross_monthly_savings']:,.0f}, upsizing costs "
                 f"{s['upsize_monthly_cost']:,.0f}")
    lines.extend(calibration_lines(s))
    if result.scenario is not None:
        sc = result.scenario
        lines.extend(comparison_lines(s, sc.summary, sc.name, sc.label))
        changes = sc.comparison["change"].value_counts().sort_index()
        lines.append("  series: " + ", ".join(f"{k} {v}" for k, v in changes.items()))
    return "\n".join(lines)


def clusters_text(clusters: dict[str, Any]) -> str:
    """Cluster labels with their server counts, one cluster from the next told apart even when a label has a comma:
    ``batch/month-end (2 servers); idle, memory ~10 % (4 servers)``."""
    return "; ".join(f"{label} ({int(n)} {'server' if int(n) == 1 else 'servers'})" for label, n in clusters.items())


# What each calibration method does to the published breach probabilities, in words.
_METHOD_TEXT = {
    "none": "probabilities published as forecast (not recalibrated)",
    "correlation": "recalibrated with a fitted day-to-day error correlation",
    "isotonic": "recalibrated to the breach rates observed in the backtests",
    "both": "recalibrated with a fitted day-to-day error correlation and to the observed breach rates",
}


def calibration_lines(summary: dict[str, Any]) -> list[str]:
    """What the backtests say about the breach probabilities and what was done, from a risk summary.

    Returns:
        No line without ``summary["calibration"]``; one when nothing could be checked; else three: windows,
        breaches, Brier scores, rho and method; the reason; the reliability bins of the published probabilities.
    """
    cal = summary.get("calibration")
    if not cal:
        return []
    if not cal.get("windows"):
        return [f"Calibration: not checked ({cal.get('reason', '')})"]
    by_metric = ", ".join(f"{k} {v}" for k, v in cal["breaches_by_metric"].items() if v)
    per = f" ({cal['windows_per_series']} per series)" if cal.get("windows_per_series") else ""
    line = (f"Calibration: {cal['windows']} backtest windows{per}, {cal['breaches']} with a breach"
            + (f" ({by_metric})" if by_metric else "")
            + f"; probability error (Brier score, lower is better) {cal['brier_raw']:.4f} against "
              f"{cal['brier_base_rate']:.4f} for always predicting the average breach rate")
    if cal["method"] != "none":
        line += f", {cal['brier_calibrated']:.4f} after recalibration (on held-out windows)"
    line += (f"; {_METHOD_TEXT.get(cal['method'], cal['method'])}, day-to-day error correlation "
             f"(rho) {cal['rho']:g}")
    bins = "; ".join(f"{r['bin']}: {r['windows']} window{'' if r['windows'] == 1 else 's'}, predicted "
                     f"{r['mean_probability']:.2f}, observed {r['observed_frequency']:.2f}"
                     for r in cal.get("reliability", []))
    return [line, f"  why: {cal['reason']}", f"  reliability (predicted probability vs observed breach rate): {bins}"]


__all__ = ["COMPARISON_COLUMNS", "RiskResult", "calibration_lines", "carry_clusters", "clusters_text", "compare",
           "conclude", "evaluate", "log_summary", "render_summary", "run_risk", "with_what_if"]
