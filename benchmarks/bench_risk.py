"""Risk stage against the synthetic fleet's ground truth: breach flags, clusters, savings, safe consolidation.

The default fleet is generated, cleaned by the ETL transform and forecast by the forecast stage
(when those stages are importable; otherwise forecasts are emulated from ``truth/future`` plus
correlated noise, and every Result says so). The risk stage never sees the truth; it is only used
here to score.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from scipy.special import ndtri
from sklearn.metrics import adjusted_rand_score

from benchmarks.harness import Result, at_least, below, timed
from capacity_forecaster.config import EtlConfig, ForecastConfig, GenerateConfig, RiskConfig
from capacity_forecaster.generate import SyntheticFleet, generate_fleet
from capacity_forecaster.risk.current import current_state
from capacity_forecaster.risk.probability import reliability_table
from capacity_forecaster.risk.stage import run_risk

logger = logging.getLogger(__name__)

BREACH_DAYS = 3
_FLAG_LEVELS = ("medium", "high", "critical")


def emulated_forecasts(fleet: SyntheticFleet, seed: int = 7, interval: float = 0.8) -> pd.DataFrame:
    """Forecasts made from the true future plus errors a decent model would make.

    Each series gets a persistent level error (sd 4 % of its level, growing with the horizon)
    and a smoothed day-to-day error (sd 3 points); the interval is the matching normal one.

    Returns:
        server_id, metric, ds, model, yhat, yhat_lower, yhat_upper.
    """
    rng = np.random.default_rng(seed)
    fut = fleet.truth_future.sort_values(["server_id", "metric", "ds"]).reset_index(drop=True)
    keys = fut.groupby(["server_id", "metric"], sort=False)
    step = keys.cumcount().to_numpy() + 1.0
    horizon = keys["ds"].transform("size").to_numpy()
    level = keys["value"].transform("mean").to_numpy()
    codes = keys.ngroup().to_numpy()
    level_sd = 0.04 * level * (0.5 + step / horizon)
    persistent = rng.standard_normal(codes.max() + 1)[codes] * level_sd
    daily = pd.Series(rng.standard_normal(len(fut)) * 3.0).groupby(codes).transform(
        lambda s: s.rolling(3, min_periods=1).mean()).to_numpy()
    yhat = np.clip(fut["value"].to_numpy() + persistent + daily, 0, 100)
    z = float(ndtri(0.5 + interval / 2))
    half = z * np.sqrt(level_sd**2 + 3.0**2)
    return pd.DataFrame({"server_id": fut["server_id"], "metric": fut["metric"], "ds": fut["ds"],
                         "model": "emulated", "yhat": yhat, "yhat_lower": np.clip(yhat - half, 0, 100),
                         "yhat_upper": np.clip(yhat + half, 0, 100)})


def _processed(fleet: SyntheticFleet) -> tuple[pd.DataFrame, str]:
    try:
        from capacity_forecaster.etl.transform import transform
    except ImportError:
        flags = fleet.truth_anomalies[fleet.truth_anomalies["kind"].isin(["outage", "spike"])]
        marked = fleet.truth_actual.merge(flags[["server_id", "ds", "metric"]].assign(is_anomaly=True), how="left",
                                          on=["server_id", "ds", "metric"])
        return marked.assign(is_anomaly=marked["is_anomaly"].notna(), is_imputed=False), "truth_actual"
    return transform(fleet.raw_metrics, fleet.inventory, EtlConfig()).metrics, "etl"


def _forecasts(fleet: SyntheticFleet, metrics: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame | None, str]:
    """Forecasts, the published models' backtest forecasts (None when emulated) and what kind they are."""
    try:
        from capacity_forecaster.forecast.stage import run_forecast
    except ImportError:
        return emulated_forecasts(fleet), None, "EMULATED"
    result = run_forecast(metrics, ForecastConfig())
    return result.forecasts, result.backtest_forecasts, "real"


def _truth_breaches(fleet: SyntheticFleet, threshold: float) -> pd.DataFrame:
    fut = fleet.truth_future[fleet.truth_future["metric"].isin(["cpu", "memory"])]
    above = fut.assign(above=fut["value"] > threshold)
    per_series = above.groupby(["server_id", "metric"]).agg(days_above=("above", "sum"))
    first = above[above["above"]].groupby(["server_id", "metric"])["ds"].min()
    per_series["first_above"] = first
    return per_series.reset_index()


def _breaching_now(fleet: SyntheticFleet, cfg: RiskConfig) -> set[str]:
    """Servers whose true cpu or memory is already breaching by the product's rule (``current_state``)."""
    actual = fleet.truth_actual[fleet.truth_actual["metric"].isin(["cpu", "memory"])]
    state = current_state(actual, cfg)
    return set(state.loc[state["already_breaching"], "server_id"])


def _mae(errors: np.ndarray) -> float:
    return float(np.abs(errors).mean()) if len(errors) else float("nan")


def _mean(errors: np.ndarray) -> float:
    return float(errors.mean()) if len(errors) else float("nan")


def _consolidation_violations(result, fleet: SyntheticFleet, threshold: float) -> tuple[int, int, float]:
    """Hosts whose true combined future load exceeds the threshold (absolute units), hosts, worst %."""
    recs = result.recommendations
    moved = recs[recs["action"] == "consolidate"][["server_id", "target_server_id"]]
    if moved.empty:
        return 0, 0, 0.0
    hosts = moved["target_server_id"].unique()
    placement = pd.concat([moved.rename(columns={"target_server_id": "host"}),
                           pd.DataFrame({"server_id": hosts, "host": hosts})])
    inv = fleet.inventory.set_index("server_id")
    fut = fleet.truth_future[fleet.truth_future["metric"].isin(["cpu", "memory"])].merge(placement, on="server_id")
    capacity = np.where(fut["metric"] == "cpu", inv.loc[fut["server_id"], "cpu_cores"],
                        inv.loc[fut["server_id"], "memory_gb"])
    host_capacity = np.where(fut["metric"] == "cpu", inv.loc[fut["host"], "cpu_cores"],
                             inv.loc[fut["host"], "memory_gb"])
    fut = fut.assign(load=fut["value"] / 100 * capacity, cap=host_capacity)
    combined = fut.groupby(["host", "metric", "ds"]).agg(load=("load", "sum"), cap=("cap", "first"))
    pct = combined["load"] / combined["cap"] * 100
    worst = pct.groupby(level="host").max()
    return int((worst > threshold).sum()), len(hosts), float(worst.max())


def _bins(table: pd.DataFrame) -> str:
    return "bins " + ", ".join(f"{r.bin_low:.1f}-{r.bin_high:.1f}: n={r.series} p={r.mean_probability:.2f} "
                               f"obs={r.observed_frequency:.2f}" for r in table.itertuples())


def _backtest_calibration(cal: dict, tag: str) -> Result:
    """Brier score of the breach probabilities at the forecast backtest cutoffs, against the base rate alone."""
    name = f"risk breach probability Brier on backtest windows {tag}"
    if not cal.get("windows"):
        return Result(name, float("nan"), "score", "info", True, cal.get("reason", "no backtest forecasts"))
    return below(name, cal["brier_calibrated"], cal["brier_base_rate"], "score",
                 f"{cal['windows']} windows, {cal['breaches']} breached ({cal['breach_servers']} servers); raw "
                 f"{cal['brier_raw']:.5f}; method {cal['method']}, rho {cal['rho']:g}; {cal['reason']}")


def bench_risk_default_fleet() -> list[Result]:
    """Breach recall/precision, days-to-breach error, clusters, savings and consolidation safety."""
    cfg = RiskConfig()
    fleet = generate_fleet(GenerateConfig())
    metrics, history_source = _processed(fleet)
    forecasts, backtests, kind = _forecasts(fleet, metrics)
    with timed() as t:
        result = run_risk(metrics, forecasts, fleet.inventory, cfg, backtests=backtests)
    tag = f"[{kind} forecasts, history from {history_source}]"

    risk = result.server_risk
    core = risk[risk["metric"].isin(["cpu", "memory"])]
    flagged = set(core.loc[core["risk_level"].isin(_FLAG_LEVELS), "server_id"])
    truth = _truth_breaches(fleet, cfg.threshold)
    actual = set(truth.loc[truth["days_above"] >= BREACH_DAYS, "server_id"])
    servers = set(fleet.inventory["server_id"])
    tp, fp = len(flagged & actual), len(flagged - actual)
    fn, tn = len(actual - flagged), len(servers - flagged - actual)
    recall = tp / max(len(actual), 1)
    precision = tp / max(len(flagged), 1)
    confusion = f"TP {tp} FP {fp} FN {fn} TN {tn}; FP: {sorted(flagged - actual)} FN: {sorted(actual - flagged)}"

    last_obs = pd.Timestamp(fleet.truth_actual["ds"].max())
    true_first = truth.dropna(subset=["first_above"]).groupby("server_id")["first_above"].min()
    true_days = (true_first - last_obs).dt.days
    # A server over the threshold in its true recent days is breaching now (0 days), as the product says.
    true_days[true_days.index.isin(_breaching_now(fleet, cfg))] = 0
    forecast_days = core.dropna(subset=["days_to_breach"]).groupby("server_id")["days_to_breach"].min()
    needed = result.recommendations.dropna(subset=["needed_by"]).set_index("server_id")["needed_by"]
    needed_days = (needed - last_obs).dt.days
    both = sorted(set(true_days.index) & set(forecast_days.index) & actual)
    errors = np.array([float(forecast_days[s]) - true_days[s] for s in both])
    dated = sorted(set(true_days.index) & set(needed_days.index) & actual)
    needed_errors = np.array([float(needed_days[s]) - true_days[s] for s in dated])

    outcome = core.merge(truth, on=["server_id", "metric"], how="left")
    calib = reliability_table(outcome["breach_probability"].fillna(0.0), outcome["days_above"].fillna(0) > 0)

    clusters = result.clusters.merge(fleet.truth_servers[["server_id", "archetype"]], on="server_id")
    ari = adjusted_rand_score(clusters["archetype"], clusters["cluster_id"])
    majority = clusters.groupby("cluster_id")["archetype"].agg(lambda a: a.value_counts().iloc[0])
    purity = float(majority.sum() / len(clusters))

    summary = result.summary
    pct = summary["net_savings_pct"]
    violations, hosts, worst = _consolidation_violations(result, fleet, cfg.threshold)
    # Stress the packing: with decommissioning off, the idle servers are consolidated instead.
    packed = run_risk(metrics, forecasts, fleet.inventory, cfg.model_copy(update={"idle_cpu_max": 0.0}),
                      backtests=backtests)
    s_violations, s_hosts, s_worst = _consolidation_violations(packed, fleet, cfg.threshold)
    s_moved = int((packed.recommendations["action"] == "consolidate").sum())
    logger.info("calibration (Brier %.3f):\n%s", calib.attrs["brier"], calib.to_string())
    cal = summary.get("calibration", {})
    logger.info("backtest calibration: %s\n%s", cal, result.calibration.to_string())
    return [
        at_least(f"risk flag recall {tag}", recall, 0.95, "ratio", confusion),
        at_least(f"risk flag precision {tag}", precision, 0.8, "ratio", confusion),
        below(f"risk days-to-breach MAE (crossing; 0 if breaching now, in truth and forecast) {tag}", _mae(errors),
              30.0, "days",
              f"{len(both)} of {len(actual)} true breaches have a forecast crossing or breach now; "
              f"mean signed error {_mean(errors):+.1f}"),
        below(f"risk needed-by date MAE (upsize date) {tag}", _mae(needed_errors), 45.0, "days",
              f"{len(dated)} true breaches dated (crossing, likely, analogue or upper bound); "
              f"mean signed error {_mean(needed_errors):+.1f} (negative = early)"),
        below(f"risk breach probability Brier {tag}", calib.attrs["brier"], 0.1, "score",
              f"{len(outcome)} cpu/memory series on the holdout; {_bins(calib)}"),
        _backtest_calibration(cal, tag),
        at_least("risk cluster ARI vs archetypes", float(ari), 0.8, "ratio",
                 f"k={summary['k']}, purity {purity:.3f}, labels {summary['clusters']}"),
        Result(f"risk net savings share of fleet cost {tag}", pct, "%", "10-40", 10.0 <= pct <= 40.0,
               f"net {summary['net_monthly_savings']:,.0f} of {summary['fleet_monthly_cost']:,.0f}; "
               f"actions {summary['actions']}"),
        Result(f"risk consolidation hosts over {cfg.threshold:g} % on truth/future {tag}", float(violations), "hosts",
               "== 0", violations == 0, f"{hosts} hosts with guests; worst true combined peak {worst:.1f} %"),
        Result(f"risk consolidation hosts over {cfg.threshold:g} % on truth/future, decommission off {tag}",
               float(s_violations), "hosts", "== 0", s_violations == 0,
               f"{s_moved} servers moved onto {s_hosts} hosts; worst true combined peak {s_worst:.1f} %; "
               f"net savings {packed.summary['net_savings_pct']:.1f} %"),
        below("risk stage wall time (100 servers)", t.seconds, 30.0, "s"),
    ]


def bench_risk_scale() -> list[Result]:
    """Wall time of the risk stage on 1,000 servers (emulated forecasts: only the risk stage is timed)."""
    fleet = generate_fleet(GenerateConfig(servers=1000))
    flags = fleet.truth_anomalies[fleet.truth_anomalies["kind"].isin(["outage", "spike"])]
    metrics = fleet.truth_actual.merge(flags[["server_id", "ds", "metric"]].assign(is_anomaly=True), how="left",
                                       on=["server_id", "ds", "metric"])
    metrics["is_anomaly"] = metrics["is_anomaly"].notna()
    forecasts = emulated_forecasts(fleet)
    with timed() as t:
        result = run_risk(metrics, forecasts, fleet.inventory, RiskConfig(), growth=10.0)
    return [below("risk stage wall time (1000 servers, with growth what-if)", t.seconds, 120.0, "s",
                  f"{len(result.server_risk)} series, {len(result.comparison)} comparison rows")]


BENCHMARKS = [bench_risk_default_fleet, bench_risk_scale]
