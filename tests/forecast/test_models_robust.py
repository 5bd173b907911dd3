"""Exact behaviour of the recent-window models: recent_level, robust_trend, robust_combo."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from capacity_forecaster.forecast.models.recent import last_observed, recent_median, theil_sen
from capacity_forecaster.forecast.models.robust_trend import PHI
from capacity_forecaster.forecast.registry import get_model

START = pd.Timestamp("2025-01-01")


def frame(values: np.ndarray, server: str = "s1") -> pd.DataFrame:
    return pd.DataFrame({"server_id": server, "metric": "cpu",
                         "ds": START + pd.to_timedelta(np.arange(len(values)), "D"), "value": values})


def test_last_observed_skips_gaps_and_recent_median_matches_numpy() -> None:
    rng = np.random.default_rng(3)
    values = rng.uniform(0, 100, size=(6, 40))
    values[rng.random(values.shape) < 0.3] = np.nan
    values[0, :35] = np.nan  # under a week observed
    last = last_observed(values, 7)
    for row in range(len(values)):
        known = values[row][~np.isnan(values[row])][-7:]
        assert np.allclose(last[row][~np.isnan(last[row])], known)
        assert recent_median(values, 7)[row] == pytest.approx(np.median(known))


def test_theil_sen_ignores_a_saturated_day() -> None:
    line = 10.0 + 2.0 * np.arange(20)
    line[5] = 100.0
    slope, end = theil_sen(line[None, :])
    assert slope[0] == pytest.approx(2.0) and end[0] == pytest.approx(48.0)


def test_recent_level_is_the_median_of_the_last_week_despite_a_regime_switch() -> None:
    values = np.r_[np.full(30, 2.0), np.full(5, 100.0), np.array([np.nan, 100.0])]  # idle, then saturated
    out = get_model("recent_level").fit(frame(values)).predict(10)
    assert (out["yhat"] == 100.0).all()  # the last 7 observed days: one idle, six saturated
    assert (out["yhat_lower"] <= out["yhat"]).all() and (out["yhat"] <= out["yhat_upper"]).all()


def test_robust_trend_damps_the_slope() -> None:
    values = 10.0 + 0.5 * np.arange(60)
    out = get_model("robust_trend").fit(frame(values)).predict(30)
    want = values[-1] + 0.5 * np.cumsum(PHI ** np.arange(1, 31))
    assert np.allclose(out["yhat"].to_numpy(), want)
    assert out["yhat"].iloc[-1] < values[-1] + 0.5 * 30  # damped: below the straight line


def test_robust_combo_takes_the_median_of_its_members() -> None:
    rng = np.random.default_rng(0)
    values = np.clip(40 + 10 * np.sin(np.arange(70) * 2 * np.pi / 7) + rng.normal(0, 3, 70), 0, 100)
    values[[20, 66]] = np.nan  # a gap inside the trend windows: members count observed days
    history = frame(values)
    naive = get_model("seasonal_naive").fit(history).predict(14)["yhat"].to_numpy()
    known = values[~np.isnan(values)]
    levels = [np.full(14, np.median(known[-window:])) for window in (3, 7)]
    damped = np.cumsum(PHI ** np.arange(1, 15))
    trends = []
    for window in (21, 42):
        slope, end = theil_sen(known[-window:][None, :])
        trends.append(np.clip(end[0] + slope[0] * damped, 0, 100))
    combo = get_model("robust_combo").fit(history).predict(14)["yhat"].to_numpy()
    assert np.allclose(combo, np.median(np.stack([naive, *levels, *trends]), axis=0))
    assert np.allclose(levels[1], get_model("recent_level").fit(history).predict(14)["yhat"].to_numpy())
    assert np.allclose(trends[1], get_model("robust_trend").fit(history).predict(14)["yhat"].to_numpy())


def test_robust_combo_follows_a_regime_switch_that_two_windows_agree_on() -> None:
    # Idle for weeks, then saturated for the last 5 days: the 3-day level, the 7-day level (5 of 7 days) and
    # seasonal naive (5 of 7) say saturated; the median of the five follows them, not the lagging trend lines.
    values = np.r_[np.full(50, 5.0), np.full(5, 100.0)]
    combo = get_model("robust_combo").fit(frame(values)).predict(7)["yhat"].to_numpy()
    naive = get_model("seasonal_naive").fit(frame(values)).predict(7)["yhat"].to_numpy()
    assert np.allclose(combo[naive == 100.0], 100.0)
