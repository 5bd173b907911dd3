"""Each forecasting model alone: seconds per series and holdout MAE vs seasonal naive on the synthetic fleet.

History is the generator's ``truth_actual`` (the observed period without data faults, real outages and
spikes included: what a clean ETL hands over), cpu and memory of the default fleet (100 servers x
3 years); the score is the MAE against ``truth_future`` over the 180-day holdout. Models in the default
("auto") set run on every series and must be 30 % better than seasonal naive within the per-series
time budget; the slow library adapters run on the first ``ADAPTER_SERVERS`` servers and are reported
against seasonal naive on the same series.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import pandas as pd

from benchmarks.harness import Result, below, timed
from capacity_forecaster.config import GenerateConfig
from capacity_forecaster.forecast.registry import available_models, get_model
from capacity_forecaster.generate import generate_fleet

HORIZON = 180
METRICS = ("cpu", "memory")
ADAPTER_SERVERS = 25
# 60 s for 400 series x 4 fits (3 backtest windows + final) on 2 cores, all default models together.
BUDGET_S_PER_SERIES_FIT = 60.0 * 2 / (400 * 4)
TARGET_RATIO = 0.7  # the target: fleet MAE at least 30 % below seasonal naive


def _fleet() -> tuple[pd.DataFrame, pd.DataFrame]:
    fleet = generate_fleet(GenerateConfig())
    history = fleet.truth_actual[fleet.truth_actual["metric"].isin(METRICS)].reset_index(drop=True)
    future = fleet.truth_future[fleet.truth_future["metric"].isin(METRICS)].reset_index(drop=True)
    return history, future


def _score(name: str, history: pd.DataFrame, future: pd.DataFrame) -> tuple[float, dict[str, float], float]:
    """(seconds per series for fit + predict, MAE per metric, 80 % interval coverage)."""
    model = get_model(name)
    with timed() as timer:
        pred = model.fit(history, freq="D").predict(HORIZON, level=80.0)
    joined = pred.merge(future, on=["server_id", "metric", "ds"], how="inner")
    error = (joined["yhat"] - joined["value"]).abs()
    mae = error.groupby(joined["metric"]).mean().to_dict()
    covered = ((joined["value"] >= joined["yhat_lower"]) & (joined["value"] <= joined["yhat_upper"])).mean()
    n_series = history.groupby(["server_id", "metric"]).ngroups
    return timer.seconds / n_series, mae, float(covered)


def _results(
    names: list[str], history: pd.DataFrame, future: pd.DataFrame, scope: str, targets: bool = True
) -> list[Result]:
    logging.getLogger("cmdstanpy").disabled = True
    baseline_s, baseline, _ = _score("seasonal_naive", history, future)
    n_series = history.groupby(["server_id", "metric"]).ngroups
    load = os.getloadavg()[0]
    rows: list[Result] = []
    for name in names:
        seconds, mae, coverage = (baseline_s, baseline, None) if name == "seasonal_naive" else _score(
            name, history, future
        )
        in_auto = getattr(get_model(name), "auto", True)
        checked = targets and in_auto
        note = f"{n_series} series ({scope}), h={HORIZON}, load avg {load:.1f}" + ("" if in_auto else ", not in auto")
        if checked:
            rows.append(below(f"{name}: fit+predict per series", seconds, BUDGET_S_PER_SERIES_FIT, "s", note))
        else:
            rows.append(Result(f"{name}: fit+predict per series", seconds, "s", "info", True, note))
        for metric in METRICS:
            ratio = mae[metric] / baseline[metric]
            detail = f"MAE {mae[metric]:.2f} vs seasonal naive {baseline[metric]:.2f} pp"
            if coverage is not None:
                detail += f"; 80% interval coverage {coverage:.2f} (both metrics)"
            label = f"{name}: {metric} MAE / seasonal naive"
            if checked and name != "seasonal_naive":
                rows.append(below(label, ratio, TARGET_RATIO, "ratio", detail))
            else:
                rows.append(Result(label, ratio, "ratio", "info", True, detail))
    return rows


def bench_default_models() -> list[Result]:
    """The fast models (seasonal naive, harmonic, gbm_global) on every cpu/memory series of the fleet."""
    history, future = _fleet()
    get_model("harmonic").fit(history.head(2000))  # warm imports and the holiday tables
    names = [n for n in available_models() if getattr(get_model(n), "auto", True)]
    return _results(names, history, future, "all servers")


def bench_library_adapters() -> list[Result]:
    """statsforecast and Prophet adapters on the first ADAPTER_SERVERS servers (seconds per series each)."""
    history, future = _fleet()
    keep = np.sort(history["server_id"].unique())[:ADAPTER_SERVERS]
    history = history[history["server_id"].isin(keep)].reset_index(drop=True)
    future = future[future["server_id"].isin(keep)].reset_index(drop=True)
    names = [n for n in available_models() if not getattr(get_model(n), "auto", True)]
    rows = _results(["seasonal_naive", *names], history, future, f"first {ADAPTER_SERVERS} servers")
    # The default models on the same series, for a like-for-like table (their targets are checked in
    # bench_default_models).
    same = _results(["harmonic", "gbm_global"], history, future, f"first {ADAPTER_SERVERS} servers", targets=False)
    return rows + [r for r in same if not r.name.startswith("seasonal_naive")]


def bench_harmonic_scale() -> list[Result]:
    """harmonic at 1000 series (250 servers x 4 metrics x 3 years): seconds per series for one fit."""
    fleet = generate_fleet(GenerateConfig(servers=250))
    history = fleet.truth_actual
    get_model("harmonic").fit(history.head(2000))
    with timed() as timer:
        get_model("harmonic").fit(history).predict(HORIZON)
    per_series = timer.seconds / history.groupby(["server_id", "metric"]).ngroups
    note = f"{1.0 / per_series:.0f} series/s; load avg {os.getloadavg()[0]:.1f}"
    name = "harmonic: fit+predict per series at 1000 series"
    return [below(name, per_series, BUDGET_S_PER_SERIES_FIT / 4, "s", note)]


BENCHMARKS = [bench_default_models, bench_library_adapters, bench_harmonic_scale]
