"""Seasonal naive against exact numbers; harmonic and the global booster against the baseline."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from capacity_forecaster.forecast.models.seasonal_naive import lead_error_quantiles
from capacity_forecaster.forecast.registry import get_model


def one_series(values: np.ndarray, start: str = "2024-01-01", freq: str = "D") -> pd.DataFrame:
    ds = pd.date_range(start, periods=len(values), freq=freq)
    return pd.DataFrame({"server_id": "a", "metric": "cpu", "ds": ds, "value": values})


def test_seasonal_naive_repeats_the_last_week_exactly() -> None:
    values = np.arange(30, dtype=float)
    pred = get_model("seasonal_naive").fit(one_series(values)).predict(17)
    expected = np.tile(values[-7:], 3)[:17]
    np.testing.assert_array_equal(pred["yhat"].to_numpy(), expected)
    assert pred["ds"].iloc[0] == pd.Timestamp("2024-01-31")


def test_seasonal_naive_fills_a_missing_day_from_the_week_before() -> None:
    values = np.arange(30, dtype=float)
    values[27] = np.nan  # a gap in the last week: the same weekday a week earlier is 20
    pred = get_model("seasonal_naive").fit(one_series(values)).predict(7)
    np.testing.assert_array_equal(pred["yhat"].to_numpy(), [23, 24, 25, 26, 20, 28, 29])


def test_seasonal_naive_hourly_repeats_the_last_day() -> None:
    values = np.arange(24 * 5, dtype=float) % 24 + 10.0
    values[-1] = 50.0
    pred = get_model("seasonal_naive").fit(one_series(values, freq="h"), freq="h").predict(30)
    np.testing.assert_array_equal(pred["yhat"].to_numpy(), np.tile(values[-24:], 2)[:30])


def test_seasonal_naive_on_a_tiny_series_uses_its_mean_and_a_wide_interval() -> None:
    pred = get_model("seasonal_naive").fit(one_series(np.array([10.0, 20.0, np.nan]))).predict(7)
    # Days 3..9 take the phases of days -4..2: unknown (the mean), unknown, ..., 10, 20, unknown.
    assert pred["yhat"].tolist() == [15.0, 15.0, 15.0, 15.0, 10.0, 20.0, 15.0]
    assert ((pred["yhat_upper"] - pred["yhat_lower"]) >= 20.0).all()


def test_seasonal_naive_intervals_come_from_its_own_seasonal_errors() -> None:
    # A pure weekly cycle plus an alternating weekly offset of +-1: lag-7 errors are exactly +-2.
    week = np.array([5.0, 9.0, 9.0, 9.0, 9.0, 9.0, 5.0])
    offsets = np.repeat(np.where(np.arange(20) % 2 == 0, 1.0, -1.0), 7)
    values = np.tile(week, 20) + offsets
    lower, upper = lead_error_quantiles(values[None, :], 7, 4, 80.0)
    np.testing.assert_allclose(lower[0, 0], -2.0)
    np.testing.assert_allclose(upper[0, 0], 2.0)
    np.testing.assert_allclose(lower[0, 1], 0.0)  # two weeks back the offset is the same
    assert (np.diff(upper[0, ::2]) >= 0).all()


def trending_fleet(n: int, days: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Trend + weekly + yearly + month-end series with noise: (history, the next 120 days)."""
    rng = np.random.default_rng(seed)
    ds = pd.date_range("2022-01-03", periods=days + 120, freq="D")
    t = np.arange(len(ds))
    business = np.asarray(ds.dayofweek) < 5
    month_end = np.asarray(ds.isin(pd.date_range(ds[0], ds[-1], freq="BME")))  # last weekday of a month
    frames = []
    for i in range(n):
        slope = rng.uniform(0.02, 0.06)
        level = 15.0 + 3.0 * i + slope * t + 10.0 * business + 5.0 * np.sin(2 * np.pi * t / 365.25)
        level = level + 12.0 * month_end + rng.normal(0.0, 1.5, len(ds))
        frames.append(pd.DataFrame({"server_id": f"s{i}", "metric": "cpu", "ds": ds, "value": level}))
    full = pd.concat(frames, ignore_index=True)
    cut = ds[days - 1]
    return full[full["ds"] <= cut].reset_index(drop=True), full[full["ds"] > cut].reset_index(drop=True)


def mae(name: str, history: pd.DataFrame, future: pd.DataFrame) -> float:
    pred = get_model(name).fit(history).predict(120)
    joined = pred.merge(future, on=["server_id", "metric", "ds"])
    assert len(joined) == len(future)
    return float((joined["yhat"] - joined["value"]).abs().mean())


def test_harmonic_beats_seasonal_naive_on_trending_seasonal_series() -> None:
    history, future = trending_fleet(8, 800, seed=3)
    baseline, harmonic = mae("seasonal_naive", history, future), mae("harmonic", history, future)
    assert harmonic < 0.6 * baseline, (harmonic, baseline)


def test_gbm_global_beats_seasonal_naive_on_trending_seasonal_series() -> None:
    history, future = trending_fleet(8, 800, seed=4)
    baseline, booster = mae("seasonal_naive", history, future), mae("gbm_global", history, future)
    assert booster < 0.8 * baseline, (booster, baseline)


def test_harmonic_extrapolates_a_late_trend_change_and_a_level_shift() -> None:
    days = np.arange(900)
    values = 20.0 + np.where(days > 600, (days - 600) * 0.05, 0.0) + np.where(days > 300, 10.0, 0.0)
    pred = get_model("harmonic").fit(one_series(values)).predict(90)
    truth = 20.0 + 10.0 + (np.arange(900, 990) - 600) * 0.05
    np.testing.assert_allclose(pred["yhat"].to_numpy(), truth, atol=1.0)


def test_harmonic_trend_cap_and_damping_limit_the_extrapolation() -> None:
    values = 10.0 + np.arange(200) * 0.05  # +10 points over the history
    free = get_model("harmonic", trend_cap=10.0).fit(one_series(values)).predict(400)["yhat"].to_numpy()
    damped = get_model("harmonic", damping=0.98).fit(one_series(values)).predict(400)["yhat"].to_numpy()
    capped = get_model("harmonic", trend_cap=0.5).fit(one_series(values)).predict(400)["yhat"].to_numpy()
    assert free[-1] == pytest.approx(20.0 + 0.05 * 400, abs=0.5)
    assert damped[-1] == pytest.approx(20.0 + 0.05 * 0.98 / 0.02, abs=0.5)  # sum of 0.98**i
    assert capped.max() == pytest.approx(20.0 + 5.0, abs=0.5)  # half the history's 10-point range


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.floats(0.0, 100.0), min_size=30, max_size=120),
    st.lists(st.integers(0, 119), max_size=30),
    st.sampled_from(["seasonal_naive", "harmonic"]),
)
def test_fast_models_keep_the_invariants_on_any_series(values: list[float], holes: list[int], name: str) -> None:
    series = np.array(values)
    series[[h for h in holes if h < len(series) - 1]] = np.nan
    model = get_model(name)
    assume(np.isfinite(series).sum() >= model.min_history)
    pred = model.fit(one_series(series)).predict(20, level=80.0)
    assert len(pred) == 20
    assert (pred["yhat_lower"] <= pred["yhat"]).all() and (pred["yhat"] <= pred["yhat_upper"]).all()
    assert pred[["yhat", "yhat_lower", "yhat_upper"]].stack().between(0.0, 100.0).all()
