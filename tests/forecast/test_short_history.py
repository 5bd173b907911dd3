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
