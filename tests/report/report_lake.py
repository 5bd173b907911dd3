"""A small, deterministic lake with every table the reports read, built by hand (no forecasting run)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from capacity_forecaster.config import LakeConfig, Settings
from capacity_forecaster.storage import Lake
from capacity_forecaster.storage.manifest import stage_run

END = pd.Timestamp("2026-06-30")
HISTORY_DAYS = 240
HORIZON = 90
THRESHOLD = 80.0
METRICS = ("cpu", "memory", "disk", "network")
# server -> (cpu level, cpu growth per day, memory level, memory growth per day)
SERVERS = {
    "srv-0001": (75.0, 0.20, 55.0, 0.02),   # cpu crosses 80 % within weeks: critical
    "srv-0002": (45.0, 0.02, 70.0, 0.20),   # memory crosses after about two months: high
    "srv-0003": (70.0, 0.12, 40.0, 0.00),   # cpu crosses late in the horizon: medium
    "srv-0004": (35.0, 0.00, 45.0, 0.00),
    "srv-0005": (30.0, 0.01, 35.0, 0.00),
    "srv-0006": (25.0, 0.00, 30.0, 0.01),
    "srv-0007": (20.0, 0.00, 28.0, 0.00),
    "srv-0008": (3.0, 0.00, 12.0, 0.00),    # idle: decommission
}
RISKIEST = "srv-0001"


def _inventory() -> pd.DataFrame:
    ids = list(SERVERS)
    return pd.DataFrame({
        "server_id": ids,
        "hostname": [f"nyc-prd-app{i:02d}" for i in range(1, len(ids) + 1)],
        "application": ["payments", "ledger", "trading", "crm", "crm", "reporting", "hr", "archive"],
        "business_unit": ["retail", "retail", "markets", "retail", "retail", "finance", "corporate", "corporate"],
        "environment": ["prod", "prod", "prod", "prod", "uat", "prod", "dev", "prod"],
        "datacenter": ["NY1", "NY1", "NJ2", "NJ2", "NY1", "NJ2", "NY1", "NJ2"],
        "server_type": ["virtual"] * 6 + ["physical"] * 2,
        "cpu_cores": [16, 16, 32, 8, 8, 8, 4, 8],
        "memory_gb": [64, 128, 256, 32, 32, 32, 16, 32],
        "monthly_cost_usd": [900.0, 1100.0, 2400.0, 450.0, 450.0, 450.0, 300.0, 700.0],
    })


def _levels(server: str, metric: str) -> tuple[float, float]:
    cpu, cpu_growth, mem, mem_growth = SERVERS[server]
    return {"cpu": (cpu, cpu_growth), "memory": (mem, mem_growth), "disk": (0.8 * mem, 0.0),
            "network": (0.5 * cpu, 0.0)}[metric]


def _metrics(rng: np.random.Generator) -> pd.DataFrame:
    days = pd.date_range(end=END, periods=HISTORY_DAYS, freq="D")
    t = np.arange(HISTORY_DAYS) - HISTORY_DAYS
    weekly = np.where(days.dayofweek >= 5, -4.0, 1.5)
    frames = []
    for server in SERVERS:
        for metric in METRICS:
            level, growth = _levels(server, metric)
            value = np.clip(level + growth * t + weekly * (level > 10) + rng.normal(0, 1.5, HISTORY_DAYS), 0, 100)
            imputed = rng.random(HISTORY_DAYS) < 0.02
            anomaly = rng.random(HISTORY_DAYS) < 0.01
            value = np.where(anomaly, np.clip(value + 25, 0, 100), value)
            frames.append(pd.DataFrame({
                "server_id": server, "ds": days, "metric": metric, "value": value, "value_raw": value,
                "is_imputed": imputed, "is_outlier": False, "is_anomaly": anomaly,
                "anomaly_score": np.where(anomaly, 5.0, 0.5),
            }))
    return pd.concat(frames, ignore_index=True)


def _forecasts(rng: np.random.Generator) -> pd.DataFrame:
    days = pd.date_range(END + pd.Timedelta(days=1), periods=HORIZON, freq="D")
    t = np.arange(1, HORIZON + 1)
    weekly = np.where(days.dayofweek >= 5, -4.0, 1.5)
    frames = []
    for i, server in enumerate(SERVERS):
        for metric in METRICS:
            level, growth = _levels(server, metric)
            yhat = np.clip(level + growth * t + weekly * (level > 10), 0, 100)
            half = 6.0 + 0.04 * t
            frames.append(pd.DataFrame({
                "server_id": server, "metric": metric, "ds": days, "model": ("autoets", "mstl")[i % 2],
                "yhat": yhat, "yhat_lower": np.clip(yhat - half, 0, 100), "yhat_upper": np.clip(yhat + half, 0, 100),
            }))
    return pd.concat(frames, ignore_index=True)


def _backtests(rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    for i, server in enumerate(SERVERS):
        for metric in METRICS:
            for model in ("seasonal_naive", "autoets", "mstl"):
                for cutoff in (END - pd.Timedelta(days=90), END - pd.Timedelta(days=45)):
                    mase = {"seasonal_naive": 1.0, "autoets": 0.8, "mstl": 0.85}[model] * rng.uniform(0.8, 1.2)
                    rows.append({"server_id": server, "metric": metric, "model": model, "cutoff": cutoff,
                                 "mae": 2.0 * mase, "rmse": 2.6 * mase, "mape": 0.05 * mase, "mase": mase,
                                 "coverage": rng.uniform(0.7, 0.9), "selected": model == ("autoets", "mstl")[i % 2],
                                 "smape": 0.05 * mase, "n_points": 45, "window": 1})
    return pd.DataFrame(rows)


def _backtest_forecasts(metrics: pd.DataFrame) -> pd.DataFrame:
    """The chosen model's forecasts from the two backtest cutoffs: 45 days each, a few points off the actuals."""
    frames = []
    for cutoff in (END - pd.Timedelta(days=90), END - pd.Timedelta(days=45)):
        window = metrics[(metrics["ds"] > cutoff) & (metrics["ds"] <= cutoff + pd.Timedelta(days=45))]
        yhat = np.clip(window["value"].to_numpy(float) - 3.0, 0, 100)
        frames.append(pd.DataFrame({
            "server_id": window["server_id"].to_numpy(), "metric": window["metric"].to_numpy(), "model": "autoets",
            "cutoff": cutoff.date(), "ds": window["ds"].dt.date.to_numpy(), "y": window["value"].to_numpy(float),
            "yhat": yhat, "yhat_lower": np.clip(yhat - 5, 0, 100), "yhat_upper": np.clip(yhat + 5, 0, 100)}))
    return pd.concat(frames, ignore_index=True)


def _server_risk(forecasts: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (server, metric), f in forecasts.groupby(["server_id", "metric"], sort=True):
        above = f[f["yhat"] > THRESHOLD]
        upper = f[f["yhat_upper"] > THRESHOLD]
        breach = above["ds"].min() if len(above) else pd.NaT
        days = int((breach - END).days) if len(above) else None
        level = ("low" if days is None and upper.empty else "medium" if days is None or days > 60
                 else "high" if days > 30 else "critical")
        peak = f.loc[f["yhat"].idxmax()]
        rows.append({
            "server_id": server, "metric": metric, "risk_level": level, "peak_yhat": peak["yhat"],
            "peak_ds": peak["ds"], "breach_ds": breach, "days_to_breach": days,
            "breach_probability": {"critical": 0.95, "high": 0.8, "medium": 0.4, "low": 0.02}[level],
            "status": "assessed", "threshold": THRESHOLD, "reason": f"{metric} forecast vs {THRESHOLD:g} %",
        })
    out = pd.DataFrame(rows)
    out["days_to_breach"] = out["days_to_breach"].astype("Int64")
    return out


def _clusters() -> pd.DataFrame:
    labels = {"srv-0001": "growing", "srv-0002": "growing", "srv-0003": "growing", "srv-0008": "idle"}
    frame = pd.DataFrame({"server_id": list(SERVERS)})
    frame["cluster_label"] = frame["server_id"].map(labels).fillna("steady business-day")
    frame["cluster_id"] = frame["cluster_label"].map({"growing": 0, "steady business-day": 1, "idle": 2})
    return frame.assign(silhouette=0.4)


def _recommendations(inventory: pd.DataFrame) -> pd.DataFrame:
    action = {"srv-0001": "upsize", "srv-0002": "upsize", "srv-0004": "rightsize", "srv-0006": "consolidate",
              "srv-0007": "consolidate", "srv-0008": "decommission"}
    out = inventory[["server_id", "cpu_cores", "memory_gb", "monthly_cost_usd"]].rename(
        columns={"monthly_cost_usd": "current_monthly_cost"})
    out["action"] = out["server_id"].map(action).fillna("keep")
    factor = out["action"].map({"upsize": 1.5, "rightsize": 0.5, "consolidate": 0.0, "decommission": 0.0,
                                "keep": 1.0})
    out["projected_monthly_cost"] = out["current_monthly_cost"] * factor
    out["monthly_savings"] = out["current_monthly_cost"] - out["projected_monthly_cost"]
    out["target_server_id"] = np.where(out["action"] == "consolidate", "srv-0005", None)
    out["recommended_cpu_cores"] = (out["cpu_cores"] * factor.where(factor > 0, 1.0)).astype(int)
    out["recommended_memory_gb"] = (out["memory_gb"] * factor.where(factor > 0, 1.0)).astype(int)
    out["rationale"] = out["action"].map(lambda a: f"{a}: fixture rationale")
    return out.drop(columns=["cpu_cores", "memory_gb"])


# The series made already breaching by ``breaching=True``: its last observed days are over the threshold while its
# forecast first crosses late in the horizon.
BREACHING = ("srv-0003", "cpu")
BREACHING_DAYS = 5


def build_lake(root: Path | str, *, stages: tuple[str, ...] = ("etl", "forecast", "risk"),
               priced: bool = True, breaching: bool = False) -> Lake:
    """Write the fixture lake (folder or ``s3://`` URI); ``stages`` picks the stage outputs beyond the inventory;
    ``priced=False``: an inventory without monthly costs (as the Bitbrains example), so savings are unknown;
    ``breaching=True``: the last ``BREACHING_DAYS`` observed days of ``BREACHING`` at 88 % (already breaching)."""
    rng = np.random.default_rng(7)
    lake = Lake.open(str(root), LakeConfig(), for_writing=True)
    settings = Settings()
    inventory = _inventory() if priced else _inventory().assign(monthly_cost_usd=np.nan)
    with stage_run(lake, "generate", settings) as run:
        run.wrote(lake.write_table("inventory", inventory))
    metrics = _metrics(rng)
    if breaching:
        last = (metrics["server_id"] == BREACHING[0]) & (metrics["metric"] == BREACHING[1]) & (
            metrics["ds"] > END - pd.Timedelta(days=BREACHING_DAYS))
        metrics.loc[last, ["value", "value_raw"]] = 88.0
    if "etl" in stages:
        with stage_run(lake, "etl", settings) as run:
            run.wrote(lake.write_table("metrics", metrics))
    forecasts = _forecasts(rng)
    if "forecast" in stages:
        with stage_run(lake, "forecast", settings) as run:
            run.wrote(lake.write_table("forecasts", forecasts))
            run.wrote(lake.write_table("backtests", _backtests(rng)))
            run.wrote(lake.write_table("backtest_forecasts", _backtest_forecasts(metrics)))
    if "risk" in stages:
        with stage_run(lake, "risk", settings) as run:
            run.wrote(lake.write_table("server_risk", _server_risk(forecasts)))
            run.wrote(lake.write_table("clusters", _clusters()))
            run.wrote(lake.write_table("recommendations", _recommendations(inventory)))
    return lake


def report_file(result: Any, name: str) -> Path:
    """The local path of one written report file."""
    return Path(next(f.uri for f in result.files if f.name == name))


WHATIF_GROWTH = 20.0


def build_whatif_lake(root: Path | str, growth: float = WHATIF_GROWTH, priced: bool = True,
                      breaching: bool = False) -> Lake:
    """The fixture lake up to forecasts, then the real risk stage with a what-if growth (fills risk_comparison)."""
    from capacity_forecaster.stages.risk import risk_stage

    lake = build_lake(root, stages=("etl", "forecast"), priced=priced, breaching=breaching)
    risk_stage(lake, Settings(), growth=growth)
    return lake
