"""Forecast stage: accuracy against the synthetic holdout truth, interval coverage, speed and scale.

The default synthetic fleet (100 servers x 4 metrics x 3 years, 180-day holdout in ``truth_future``)
goes through the real ETL ``transform`` and then ``run_forecast`` with the default configuration
(``models=auto``: every registered model + ensemble, 3 backtest windows, 2 local workers). Every model
is also run alone through the same engine so that the table model x metric x MAE shows whether the
per-series selection earns its cost. Scale runs time the whole stage at 1,000 and 5,000 series.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from benchmarks.harness import Result, at_least, below, peak_rss_mb, timed
from capacity_forecaster.config import EtlConfig, ForecastConfig, GenerateConfig
from capacity_forecaster.etl.transform import transform
from capacity_forecaster.forecast.engine import BASELINE
from capacity_forecaster.forecast.stage import ForecastResult, resolve_models, run_forecast
from capacity_forecaster.generate import generate_fleet

log = logging.getLogger(__name__)
KEYS = ["server_id", "metric", "ds"]


def _processed(servers: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Processed metrics (through the real ETL) and the holdout truth of a synthetic fleet."""
    fleet = generate_fleet(GenerateConfig(servers=servers))
    return transform(fleet.raw_metrics, fleet.inventory, EtlConfig()).metrics, fleet.truth_future


def _holdout(forecasts: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """Forecast rows joined with the truth: ``ae`` (absolute error), ``ape``, ``inside`` (in the interval)."""
    out = forecasts.merge(truth.rename(columns={"value": "y"}), on=KEYS)
    out["ae"] = (out["y"] - out["yhat"]).abs()
    out["ape"] = out["ae"] / out["y"].where(out["y"] > 0)
    out["inside"] = (out["yhat_lower"] <= out["y"]) & (out["y"] <= out["yhat_upper"])
    return out


def _mae_by_metric(forecasts: pd.DataFrame, truth: pd.DataFrame) -> pd.Series:
    return _holdout(forecasts, truth).groupby("metric")["ae"].mean()


def _quality(result: ForecastResult, truth: pd.DataFrame, alone: dict[str, pd.Series]) -> list[Result]:
    scored = _holdout(result.forecasts, truth)
    chosen = scored.groupby("metric")["ae"].mean()
    naive = alone[BASELINE]
    rows: list[Result] = []
    for metric in ("cpu", "memory"):
        gain = float(1.0 - chosen[metric] / naive[metric])
        rows.append(at_least(f"forecast {metric} MAE reduction vs seasonal naive", gain, 0.30, "ratio",
                             f"chosen {chosen[metric]:.3f} pp vs naive {naive[metric]:.3f} pp"))
    table = pd.DataFrame(alone).T
    best_single = table.mean(axis=1).idxmin()
    fleet = {name: float(mae.mean()) for name, mae in alone.items()}
    note = "; ".join(f"{m}: " + ", ".join(f"{name} {table.loc[name, m]:.3f}" for name in table.index)
                     + f", chosen {chosen[m]:.3f}" for m in chosen.index)
    rows.append(below("forecast chosen / best single model fleet MAE", float(chosen.mean() / fleet[best_single]),
                      1.0 + 1e-9, "ratio", f"best single {best_single}; model x metric MAE (pp): {note}"))
    for metric in chosen.index:
        ratio = float(chosen[metric] / table[metric].min())
        rows.append(below(f"forecast {metric} chosen / best single model MAE", ratio,
                          1.0 + 1e-9, "ratio", f"best alone for {metric}: {table[metric].idxmin()}"))
    cover = float(scored["inside"].mean())
    per_metric = scored.groupby("metric")["inside"].mean()
    rows.append(Result("forecast 80% interval coverage on holdout", cover, "ratio", "0.75-0.85",
                       0.75 <= cover <= 0.85, ", ".join(f"{k} {v:.3f}" for k, v in per_metric.items())
                       + f"; backtest (selected) {result.summary['backtest_coverage']}"))
    median_cpu = float(scored[scored["metric"] == "cpu"].groupby("server_id")["ae"].mean().median())
    rows.append(below("forecast median per-series MAE, cpu", median_cpu, 3.0, "pp"))
    one_minus_mape = 1.0 - float(scored["ape"].mean())
    rows.append(at_least("forecast 1 - MAPE (all metrics)", one_minus_mape, 0.9, "ratio",
                         ", ".join(f"{k} {1 - v:.3f}" for k, v in scored.groupby("metric")["ape"].mean().items())))
    return rows


def bench_default_fleet() -> list[Result]:
    """Default fleet, default config: time, seconds per series, accuracy vs truth, coverage."""
    metrics, truth = _processed(100)
    cfg = ForecastConfig()
    with timed() as clock:
        result = run_forecast(metrics, cfg)
    n_series = result.summary["series"]
    rows = [
        below("forecast stage 100 servers x 4 metrics (auto, 3 windows, 2 cores)", clock.seconds, 60.0, "s",
              f"models {result.summary['models']}; chosen {result.summary['chosen']}; "
              f"failures {result.summary['failures']}; peak {peak_rss_mb():.0f} MB"),
        Result("forecast seconds per series (100 servers)", clock.seconds / n_series, "s", "info", True,
               f"{n_series} series, {result.summary['units']} units"),
    ]
    alone: dict[str, pd.Series] = {}
    for name in [n for n in resolve_models(cfg.models) if n != "ensemble"]:
        with timed() as single:
            solo = run_forecast(metrics, cfg.model_copy(update={"models": name}))
        alone[name] = _mae_by_metric(solo.forecasts, truth)
        rows.append(Result(f"forecast {name} alone through the engine", single.seconds / n_series, "s/series",
                           "info", True, f"{single.seconds:.1f} s; fleet MAE {float(alone[name].mean()):.3f} pp"))
    return rows + _quality(result, truth, alone)


def _scale(n_series: int) -> list[Result]:
    servers = int(np.ceil(n_series / 4))
    metrics, _ = _processed(servers)
    with timed() as clock:
        result = run_forecast(metrics, ForecastConfig())
    per = clock.seconds / result.summary["series"]
    return [Result(f"forecast seconds per series ({result.summary['series']} series)", per, "s", "info", True,
                   f"{clock.seconds:.0f} s total; chosen {result.summary['chosen']}; peak {peak_rss_mb():.0f} MB; "
                   f"for scale: one Prophet fit is ~0.11 s/series on 2 cores (DEPENDENCIES.md), so Prophet alone "
                   f"through 3 backtest windows + the final fit would be ~0.44 s/series")]


def bench_scale_1000() -> list[Result]:
    """The whole stage at 1,000 series (250 servers)."""
    return _scale(1_000)


def bench_scale_5000() -> list[Result]:
    """The whole stage at 5,000 series (1,250 servers)."""
    return _scale(5_000)


BENCHMARKS = [bench_default_fleet, bench_scale_1000, bench_scale_5000]
