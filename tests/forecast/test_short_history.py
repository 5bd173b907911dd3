"""A series too short for models gets the recent level as its baseline when the model set has it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from capacity_forecaster.config import ForecastConfig
from capacity_forecaster.forecast.stage import run_forecast

START = pd.Timestamp("2024-01-01")


def _fleet() -> pd.DataFrame:
    """A 120-day weekly server and a new one known for 3 days: a 91 % boot day, then idle."""
    days = np.arange(120)
    long = pd.DataFrame({"server_id": "long", "ds": START + pd.to_timedelta(days, "D"), "metric": "cpu",
                         "value": 40.0 + 10.0 * np.sin(2 * np.pi * days / 7), "is_imputed": False})
    new = pd.DataFrame({"server_id": "new", "ds": long["ds"].iloc[-3:].to_numpy(), "metric": "cpu",
                        "value": [91.2, 0.9, 1.1], "is_imputed": False})
    return pd.concat([long, new], ignore_index=True)


def _cfg(models: str) -> ForecastConfig:
    return ForecastConfig(models=models, horizon=14, backtest_windows=2, backtest_step=14, n_jobs=1)


def test_a_new_server_s_boot_spike_is_not_copied_into_every_week() -> None:
    result = run_forecast(_fleet(), _cfg("auto"))
    fc = result.forecasts[result.forecasts["server_id"] == "new"]
    assert (fc["model"] == "recent_level").all()
    assert fc["yhat"].to_numpy() == pytest.approx(np.full(14, 1.1))
    assert fc["is_extrapolation"].all() and (fc["yhat_upper"] > fc["yhat"]).all()
    tri = result.triage.set_index("server_id")
    assert tri.loc["new", "status"] == "baseline" and "short history: 3 days" in tri.loc["new", "reason"]


def test_a_model_set_without_the_level_keeps_the_seasonal_naive_baseline() -> None:
    fc = run_forecast(_fleet(), _cfg("seasonal_naive,harmonic")).forecasts
    new = fc[fc["server_id"] == "new"]
    assert (new["model"] == "seasonal_naive").all() and new["yhat"].max() == pytest.approx(91.2)


def test_a_series_with_no_complete_backtest_gets_the_level_too() -> None:
    """16 days, h = 14: too short for any backtest window; the level, not a copy of one noisy week."""
    days = np.arange(16)
    noisy = pd.DataFrame({"server_id": "young", "ds": START + pd.to_timedelta(days, "D"), "metric": "cpu",
                          "value": np.where(days % 7 == 3, 60.0, 20.0), "is_imputed": False})
    result = run_forecast(pd.concat([_fleet(), noisy], ignore_index=True), _cfg("auto"))
    fc = result.forecasts[result.forecasts["server_id"] == "young"]
    assert (fc["model"] == "recent_level").all() and fc["yhat"].to_numpy() == pytest.approx(np.full(14, 20.0))
    tri = result.triage.set_index("server_id")
    assert tri.loc["young", "status"] == "baseline" and "no model has a complete backtest" in tri.loc["young", "reason"]


def test_an_untested_series_gets_the_same_interval_whatever_the_horizon() -> None:
    """helper-59: an unbacktested series looked up the fleet's pooled errors by the requested horizon's buckets,
    found none at a longer --horizon, and kept its own narrower interval (1-7-day coverage 0.78 at h = 30,
    0.665 at h = 90 on a half-new Rnd fleet). Two months of fleet history test the same leads at either horizon."""
    rng = np.random.default_rng(4)
    frames = [pd.DataFrame({"server_id": f"old-{i}", "ds": START + pd.to_timedelta(np.arange(62), "D"),
                            "metric": "cpu", "value": 40.0 + rng.normal(0, 6, 62), "is_imputed": False})
              for i in range(6)]
    frames.append(pd.DataFrame({"server_id": "young", "ds": START + pd.to_timedelta(np.arange(46, 62), "D"),
                                "metric": "cpu", "value": 30.0 + rng.normal(0, 6, 16), "is_imputed": False}))
    metrics = pd.concat(frames, ignore_index=True)
    bounds = []
    for horizon in (30, 90):
        cfg = ForecastConfig(models="recent_level", horizon=horizon, backtest_windows=3, backtest_step=14, n_jobs=1)
        fc = run_forecast(metrics, cfg).forecasts
        young = fc[fc["server_id"] == "young"].sort_values("ds").head(30)
        bounds.append(young[["yhat_lower", "yhat_upper"]].to_numpy())
        assert young["is_extrapolation"].all()
    np.testing.assert_allclose(bounds[0], bounds[1])
    assert (bounds[0][:, 1] - bounds[0][:, 0] > 1.0).all()
