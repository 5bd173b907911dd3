"""Exact behaviour of the recent-window models: recent_level, robust_trend, robust_combo."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from capacity_forecaster.forecast.models.recent import (
    PROFILE_MIN_COUNT,
    last_observed,
    recent_median,
    seasonal_profile,
    theil_sen,
)
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
    # Levels and trends are fitted to the series without its weekly profile, which is added back.
    profile = seasonal_profile(values[None, :], 7)[0]
    assert np.ptp(profile) > 10  # the weekly swing is +/- 10
    adjusted = values - profile[np.arange(70) % 7]
    ahead = profile[(70 + np.arange(14)) % 7]
    known = adjusted[~np.isnan(adjusted)]
    levels = [np.clip(np.median(known[-window:]) + ahead, 0, 100) for window in (3, 7)]
    damped = np.cumsum(PHI ** np.arange(1, 15))
    trends = []
    for window in (21, 42):
        slope, end = theil_sen(known[-window:][None, :])
        trends.append(np.clip(end[0] + slope[0] * damped + ahead, 0, 100))
    combo = get_model("robust_combo").fit(history).predict(14)["yhat"].to_numpy()
    assert np.allclose(combo, np.median(np.stack([naive, *levels, *trends]), axis=0))


def test_robust_combo_without_a_weekly_pattern_uses_the_recent_level_and_trend_models() -> None:
    values = 10.0 + 0.5 * np.arange(60)  # a straight line: no deviation from the running median to explain
    history = frame(values)
    assert np.allclose(seasonal_profile(values[None, :], 7), 0.0)
    combo = get_model("robust_combo").fit(history).predict(14)["yhat"].to_numpy()
    members = [get_model(name).fit(history).predict(14)["yhat"].to_numpy()
               for name in ("seasonal_naive", "recent_level", "robust_trend")]
    assert np.allclose(members[1], values[-7:].mean())  # odd window of a line: median = mean
    assert np.all(combo >= members[1]) and np.all(combo <= members[2] + 1e-9)


def test_seasonal_profile_recovers_a_repeating_week_and_shrinks_noise() -> None:
    week = np.array([0.0, 5.0, 5.0, 5.0, 5.0, -20.0, -25.0])  # weekdays busy, weekend quiet
    values = 50 + week[np.arange(63) % 7]
    profile = seasonal_profile(values[None, :], 7)[0]
    want = week - np.median(week)
    assert np.allclose(profile, want, atol=0.5)  # the edges' partial windows leave a strength just under 1
    # The same week under noise as large as the swing is still found, shrunk toward 0; pure noise gets little.
    rng = np.random.default_rng(7)
    noisy = seasonal_profile((values + rng.normal(0, 10, 63))[None, :], 7)[0]
    assert 0.3 < np.ptp(noisy) / np.ptp(want) < 1.0
    noise = seasonal_profile(rng.normal(50, 10, (200, 63)), 7)
    assert np.median(np.ptp(noise, axis=1)) < 0.3 * np.ptp(want)


def test_seasonal_profile_needs_enough_weeks_per_weekday() -> None:
    week = np.array([0.0, 5.0, 5.0, 5.0, 5.0, -20.0, -25.0])
    short = 50 + week[np.arange(7 * PROFILE_MIN_COUNT - 1) % 7]  # the last weekday seen one time too few
    profile = seasonal_profile(short[None, :], 7)[0]
    assert profile[(7 * PROFILE_MIN_COUNT - 1) % 7] == 0.0
    assert np.allclose(seasonal_profile(np.full((2, 20), np.nan), 7), 0.0)
    assert seasonal_profile(np.empty((0, 30)), 7).shape == (0, 7)


def test_robust_combo_follows_a_regime_switch_that_two_windows_agree_on() -> None:
    # Idle for weeks, then saturated for the last 5 days: the 3-day level, the 7-day level (5 of 7 days) and
    # seasonal naive (5 of 7) say saturated; the median of the five follows them, not the lagging trend lines.
    values = np.r_[np.full(50, 5.0), np.full(5, 100.0)]
    combo = get_model("robust_combo").fit(frame(values)).predict(7)["yhat"].to_numpy()
    naive = get_model("seasonal_naive").fit(frame(values)).predict(7)["yhat"].to_numpy()
    assert np.allclose(combo[naive == 100.0], 100.0)
