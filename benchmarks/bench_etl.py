"""ETL transform: imputation accuracy, fill rate, anomaly precision/recall against the synthetic truth; speed.

Quality is measured on the default synthetic fleet (``GenerateConfig()``), speed on a ~1 M-row fleet
(228 servers x 4 metrics x 3 years) through ``transform`` and a ~10 M-row fleet through
``transform_batches`` (batch by batch, as the pipeline drives it).
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from benchmarks.harness import Result, at_least, below, peak_rss_mb, timed
from capacity_forecaster.config import EtlConfig, GenerateConfig
from capacity_forecaster.etl.transform import EtlResult, transform, transform_batches
from capacity_forecaster.generate import generate_fleet

REAL_ANOMALIES = ("outage", "spike")
KEYS = ["server_id", "ds", "metric"]


def _with_truth(metrics: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    return metrics.merge(truth.rename(columns={"value": "truth"}), on=KEYS, how="left")


def _imputation_results(label: str, result: EtlResult, truth: pd.DataFrame) -> list[Result]:
    frame = _with_truth(result.metrics, truth)
    filled = frame[frame["is_imputed"]]
    mae = float(np.mean(np.abs(filled["value"] - filled["truth"])))
    return [below(f"etl imputation MAE vs truth ({label})", mae, 3.0, "pp",
                  f"{len(filled)} imputed values, method {result.imputation.method}")]


def _fill_results(result: EtlResult, cfg: EtlConfig) -> list[Result]:
    diag = result.diagnostics
    missing = int(diag["n_missing"].sum())
    filled = int(diag["n_imputed"].sum())
    metrics = result.metrics
    empty = metrics["value"].isna()
    note = f"{filled} of {missing} missing/replaced values filled; {int(empty.sum())} left empty in gaps > " \
           f"{cfg.max_gap_days} days"
    short = missing - int(diag["unfilled_gap_days"].sum())
    return [
        at_least("etl fill rate (all missing values)", filled / max(missing, 1), 0.95, "ratio", note),
        at_least(f"etl fill rate (gaps <= {cfg.max_gap_days} days)", filled / max(short, 1), 0.95, "ratio"),
    ]


def _anomaly_results(result: EtlResult, truth_anomalies: pd.DataFrame) -> list[Result]:
    """Precision and recall of is_anomaly against outages and spikes; a flag within +-1 day counts."""
    truth = truth_anomalies[truth_anomalies["kind"].isin(REAL_ANOMALIES)][KEYS]
    flags = result.metrics.loc[result.metrics["is_anomaly"], KEYS]

    def near(points: pd.DataFrame, targets: pd.DataFrame) -> int:
        shifted = pd.concat([targets.assign(ds=targets["ds"] + pd.Timedelta(days=d)) for d in (-1, 0, 1)])
        hit = points.merge(shifted.drop_duplicates(), on=KEYS, how="left", indicator=True)
        return int((hit["_merge"] == "both").sum())

    precision = near(flags, truth) / max(len(flags), 1)
    recall = near(truth, flags) / max(len(truth), 1)
    note = f"{len(flags)} flagged, {len(truth)} true outage/spike cells"
    return [at_least("etl anomaly precision (+-1 day)", precision, 0.8, "ratio", note),
            at_least("etl anomaly recall (+-1 day)", recall, 0.8, "ratio", note)]


def bench_quality_default_fleet() -> list[Result]:
    """Imputation MAE for both methods, fill rate, anomaly precision/recall, conflicts and stuck runs."""
    fleet = generate_fleet(GenerateConfig())
    results: list[Result] = []
    auto_cfg = EtlConfig()
    auto = transform(fleet.raw_metrics, fleet.inventory, auto_cfg)
    choice = auto.imputation
    results.append(Result("etl auto held-out MAE seasonal vs knn", choice.mae_seasonal, "pp",
                          "seasonal <= knn", choice.mae_seasonal <= choice.mae_knn,
                          f"knn {choice.mae_knn:.3f} pp on {choice.n_holdout} held-out values"))
    for method in ("seasonal", "knn"):
        result = auto if method == choice.method else transform(
            fleet.raw_metrics, fleet.inventory, EtlConfig(imputation=method))
        results += _imputation_results(method, result, fleet.truth_actual)
    results += _fill_results(auto, auto_cfg)
    results += _anomaly_results(auto, fleet.truth_anomalies)

    conflicts = fleet.truth_anomalies[fleet.truth_anomalies["kind"] == "conflict"][KEYS]
    kept = _with_truth(auto.metrics.merge(conflicts, on=KEYS), fleet.truth_actual)
    results.append(at_least("etl conflicting duplicates resolved to the true value",
                            float(np.mean(np.isclose(kept["value"], kept["truth"]))), 0.9, "ratio",
                            f"{len(kept)} conflicts; rule: closest to the local median"))
    stuck = fleet.truth_anomalies[fleet.truth_anomalies["kind"] == "stuck"][KEYS]
    metrics = auto.metrics
    changed = metrics["value"] != metrics["value_raw"]
    replaced = metrics["is_outlier"] & metrics["value_raw"].notna() & changed
    stuck_rows = metrics[replaced.to_numpy()].merge(stuck, on=KEYS)
    # The first day of a stuck run holds the true value and is kept; only the repeats are replaced.
    runs = int((stuck.sort_values(["server_id", "metric", "ds"]).groupby(["server_id", "metric"])["ds"].diff()
                != pd.Timedelta(days=1)).sum())
    repeats = len(stuck) - runs
    false_glitches = int(replaced.sum()) - len(stuck_rows)
    results.append(at_least("etl stuck repeats replaced", len(stuck_rows) / max(repeats, 1), 0.9, "ratio",
                            f"{len(stuck_rows)} of {repeats} repeats in {runs} stuck runs; "
                            f"{false_glitches} replaced outside them"))
    return results


def bench_speed_1m_rows() -> list[Result]:
    """transform over ~1 M raw rows (228 servers x 4 metrics x 3 years)."""
    fleet = generate_fleet(GenerateConfig(servers=228))
    raw, inventory = fleet.raw_metrics, fleet.inventory
    del fleet
    cpu_started = time.process_time()
    with timed() as timer:
        result = transform(raw, inventory, EtlConfig())
    cpu = time.process_time() - cpu_started
    note = f"{len(raw)} rows in, {result.counts['rows_out']} out; {cpu:.2f} s CPU"
    return [below("etl transform 1M rows", timer.seconds, 6.0, "s", note),
            below("etl transform 1M rows peak memory", peak_rss_mb(), 3000.0, "MB", "whole process")]


def bench_speed_10m_rows() -> list[Result]:
    """transform_batches over ~10 M raw rows (2,280 servers), each batch dropped after it is produced."""
    fleet = generate_fleet(GenerateConfig(servers=2280))
    raw, inventory = fleet.raw_metrics, fleet.inventory
    del fleet
    rows_out = 0
    cpu_started = time.process_time()
    with timed() as timer:
        for part in transform_batches(raw, inventory, EtlConfig()):
            rows_out += part.counts["rows_out"]
    cpu = time.process_time() - cpu_started
    note = f"{len(raw)} rows in, {rows_out} out; {cpu:.2f} s CPU"
    return [below("etl transform_batches 10M rows", timer.seconds, 90.0, "s", note),
            below("etl transform_batches 10M rows peak memory", peak_rss_mb(), 8000.0, "MB", "whole process")]


BENCHMARKS = [bench_quality_default_fleet, bench_speed_1m_rows, bench_speed_10m_rows]
