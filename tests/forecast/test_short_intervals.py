"""Intervals of series shorter than forecast.min_history_days: the fleet's pooled raw errors of their model, grown
past the pool's reach as a tested series extrapolates (helper-68)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from capacity_forecaster.config import ForecastConfig
from capacity_forecaster.forecast.stage import run_forecast

START = pd.Timestamp("2024-01-01")


def _fleet() -> pd.DataFrame:
    """30 noisy servers with 120 days at 40-60 %, and three new ones with 3, 6 and 10 days."""
    rng = np.random.default_rng(7)
    frames = []
    for i in range(30):
        frames.append(pd.DataFrame({"server_id": f"old-{i:02d}", "ds": START + pd.to_timedelta(np.arange(120), "D"),
                                    "metric": "cpu", "value": 40 + 20 * rng.random() + rng.normal(0, 5, 120)}))
    for days in (3, 6, 10):
        frames.append(pd.DataFrame({"server_id": f"new-{days:02d}",
                                    "ds": START + pd.to_timedelta(np.arange(120 - days, 120), "D"),
                                    "metric": "cpu", "value": 50 + rng.normal(0, 5, days)}))
    return pd.concat(frames, ignore_index=True).assign(is_imputed=False)


def _halves(data: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """Half-widths by step: the new servers' (one column each) and the long servers' median."""
    result = run_forecast(data, ForecastConfig(models="recent_level,seasonal_naive", horizon=30, n_jobs=1))
    fc = result.forecasts.assign(half=lambda f: (f["yhat_upper"] - f["yhat_lower"]) / 2)
    fc["step"] = fc.groupby("server_id").cumcount() + 1
    new = fc[fc["server_id"].str.startswith("new-")].pivot(index="step", columns="server_id", values="half")
    assert (result.triage.set_index("server_id").loc[new.columns, "status"] == "baseline").all()
    return new, fc[fc["server_id"].str.startswith("old-")].groupby("step")["half"].median()


def test_a_new_server_takes_the_fleets_errors_not_a_zero_or_a_runaway_interval() -> None:
    """Bitbrains Rnd copies of 3-10 days covered 0.49 at 1-7-day leads (their own weekly-difference scale was NaN or
    a few pairs: a near-zero width up to the pool's reach) and 0.98 at 15-30 (the recent-level rule's spread grown
    from step 1, times 1.5: 78 points wide), so their breach probabilities were three times the breach rate."""
    new, old = _halves(_fleet())
    # The same fleet interval for each new server whatever its few days say, about the long servers' own.
    assert all(np.allclose(row, row.iloc[0]) for _, row in new.iterrows())
    assert ((new.iloc[:, 0] / old).between(0.8, 1.25)).all()


def test_past_the_pools_reach_a_new_server_grows_as_a_tested_one_extrapolates() -> None:
    """Long servers of 45 days test 15-day leads at h = 30: past them the new servers' interval grows by
    sqrt(step / reach) from the pool's last bucket, not from its own spread at step 1."""
    data = _fleet()
    new, _ = _halves(data[data["ds"] >= data["ds"].max() - pd.Timedelta(days=44)])
    grown = new.loc[16:, "new-03"].to_numpy() / new.loc[15, "new-03"]
    assert np.allclose(grown, np.sqrt(np.arange(16, 31) / 15), rtol=1e-6)
    assert new.loc[30].max() < 15


def test_a_constant_new_server_keeps_the_flat_baseline() -> None:
    """As a constant series of any length does (backtest.triage, choose_models): helper-70 found a flat 5-day server
    with the fleet's band and a flat 14-day one without."""
    data = _fleet()
    end = data["ds"].max()
    flat = pd.DataFrame({"server_id": "flat", "ds": pd.date_range(end - pd.Timedelta(days=4), end), "metric": "cpu",
                         "value": 75.0, "is_imputed": False})
    result = run_forecast(pd.concat([data, flat], ignore_index=True),
                          ForecastConfig(models="recent_level,seasonal_naive", horizon=30, n_jobs=1))
    fc = result.forecasts[result.forecasts["server_id"] == "flat"]
    assert ((fc["yhat_upper"] - fc["yhat_lower"]) < 0.1).all() and (fc["yhat"] == 75.0).all()
