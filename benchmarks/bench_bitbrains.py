"""Forecast accuracy on real monitoring data: the Bitbrains Rnd VMs in ``../shared/data/real``.

The 14 VMs' 5-minute samples go through the real ingest (``mappings/bitbrains.yaml``, daily P95) and
ETL; every model is trained on July-August 2013 and forecasts September daily P95 through the
forecast engine. The score is the MAE in points against the September daily P95 the ETL kept as
measured (imputed days are not scored). The issue asks for this table against seasonal naive and
Prophet alone; ``auto`` is the default selection.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd
import pyarrow.fs as pafs

from benchmarks.harness import Result, timed
from capacity_forecaster.config import EtlConfig, ForecastConfig, IngestConfig
from capacity_forecaster.etl.ingest import ingest
from capacity_forecaster.etl.mapping import load_mapping
from capacity_forecaster.etl.transform import transform
from capacity_forecaster.forecast.stage import run_forecast

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[1]
RND = REPO / ".." / "shared" / "data" / "real" / "bitbrains_rnd" / "rnd"
SPLIT = pd.Timestamp("2013-09-01")
MODELS = ("seasonal_naive", "harmonic", "prophet", "autoarima", "autoets", "auto")


def _local(uri: str) -> tuple[pafs.FileSystem, str]:
    return pafs.LocalFileSystem(), os.path.abspath(uri)


def _processed() -> pd.DataFrame:
    sources = [str(RND / month) for month in ("2013-7", "2013-8", "2013-9")]
    raw = ingest(sources, load_mapping(REPO / "mappings" / "bitbrains.yaml"), IngestConfig(), _local)
    inventory = raw.inventory if raw.inventory is not None else pd.DataFrame(
        {"server_id": raw.raw_metrics["server_id"].unique()})
    metrics = transform(raw.raw_metrics, inventory, EtlConfig()).metrics
    return metrics[metrics["metric"].isin(["cpu", "memory"])].reset_index(drop=True)


def bench_bitbrains_september() -> list[Result]:
    """Train July-August, forecast September: MAE per model (cpu, memory) vs seasonal naive and Prophet."""
    if not RND.is_dir():
        return [Result("bitbrains September forecast", float("nan"), "pp", "info", False, f"no data at {RND}")]
    metrics = _processed()
    ds = pd.to_datetime(metrics["ds"])
    train = metrics[ds < SPLIT]
    actual = metrics[(ds >= SPLIT) & ~metrics["is_imputed"] & metrics["value"].notna()]
    horizon = int((pd.to_datetime(actual["ds"]).max() - SPLIT).days) + 1
    cfg = ForecastConfig(horizon=horizon, backtest_windows=1, backtest_step=horizon, min_history_days=28)
    rows: list[Result] = []
    mae: dict[str, pd.Series] = {}
    for name in MODELS:
        with timed() as clock:
            result = run_forecast(train, cfg.model_copy(update={"models": name}))
        joined = result.forecasts.assign(ds=pd.to_datetime(result.forecasts["ds"])).merge(
            actual.assign(ds=pd.to_datetime(actual["ds"]))[["server_id", "metric", "ds", "value"]],
            on=["server_id", "metric", "ds"])
        joined["ae"] = (joined["value"] - joined["yhat"]).abs()
        inside = ((joined["yhat_lower"] <= joined["value"]) & (joined["value"] <= joined["yhat_upper"])).mean()
        mae[name] = joined.groupby("metric")["ae"].mean()
        used = result.forecasts.drop_duplicates(["server_id", "metric"])["model"].value_counts().to_dict()
        rows.append(Result(f"bitbrains Sept MAE {name}", float(joined["ae"].mean()), "pp", "info", True,
                           f"cpu {mae[name]['cpu']:.2f}, memory {mae[name]['memory']:.2f}; 80% coverage "
                           f"{inside:.2f}; {len(joined)} scored days; published {used}; {clock.seconds:.1f} s"))
    for name in ("auto", "harmonic"):
        for reference in ("seasonal_naive", "prophet"):
            ratio = float(mae[name].mean() / mae[reference].mean())
            rows.append(Result(f"bitbrains Sept MAE {name} / {reference}", ratio, "ratio", "info", True,
                               "below 1 = better than " + reference))
    return rows


BENCHMARKS = [bench_bitbrains_september]
