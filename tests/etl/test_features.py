"""Features: lags and past-only rolling windows without leakage, calendar flags, the batched ADF test."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from statsmodels.tsa.adfvalues import mackinnonp
from statsmodels.tsa.stattools import adfuller

from capacity_forecaster.etl.calendar import day_calendar
from capacity_forecaster.etl.diagnostics import adf_test, mackinnon_pvalue
from capacity_forecaster.etl.features import calendar_features, feature_names, series_features

EPOCH = pd.Timestamp("1970-01-01")


def _cells(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.nonzero(np.ones(values.shape, dtype=bool))


def test_lags_look_back_within_the_series_only() -> None:
    values = np.vstack([np.arange(10.0), 100.0 + np.arange(10.0)])
    rows, cols = _cells(values)
    out = series_features(values, rows, cols, (1, 3), (2,))
    lag1 = out["lag_1"].reshape(values.shape)
    assert np.isnan(lag1[:, 0]).all()
    np.testing.assert_array_equal(lag1[:, 1:], values[:, :-1])
    assert np.isnan(out["lag_3"].reshape(values.shape)[1, :3]).all()
    assert out["lag_1"].dtype == np.float32


def test_rolling_windows_end_the_day_before() -> None:
    values = np.arange(1.0, 31.0)[None, :]
    rows, cols = _cells(values)
    out = series_features(values, rows, cols, (), (7,))
    mean, peak, std = (out[f"roll_{s}_7"].reshape(values.shape)[0] for s in ("mean", "max", "std"))
    assert mean[10] == pytest.approx(np.mean(values[0, 3:10]))
    assert peak[10] == pytest.approx(9.0 + 1.0)
    assert std[10] == pytest.approx(np.std(values[0, 3:10], ddof=1))
    assert np.isnan(mean[:4]).all() and mean[4] == pytest.approx(2.5), "a window needs half its days"


def test_rolling_windows_do_not_reach_into_the_previous_series() -> None:
    values = np.vstack([np.full(10, 90.0), np.full(10, 10.0)])
    rows, cols = _cells(values)
    peak = series_features(values, rows, cols, (), (7,))["roll_max_7"].reshape(values.shape)
    assert np.nanmax(peak[1]) == 10.0 and np.isnan(peak[1, :4]).all()


def test_empty_days_are_skipped_not_invented() -> None:
    values = np.arange(1.0, 21.0)[None, :]
    values[0, 5:9] = np.nan
    rows, cols = _cells(values)
    out = series_features(values, rows, cols, (1,), (4,))
    assert np.isnan(out["lag_1"][9]) and np.isnan(out["roll_mean_4"][9])
    assert out["roll_mean_4"][11] == pytest.approx(np.mean([10.0, 11.0]))


def test_feature_names_list_lags_then_windows() -> None:
    assert feature_names((1, 7), (7,)) == ["lag_1", "lag_7", "roll_mean_7", "roll_std_7", "roll_max_7"]


@pytest.mark.parametrize(
    ("date", "flags"),
    [
        ("2024-03-28", {"is_month_end", "is_quarter_end"}),  # Good Friday 29 March is an NYSE holiday
        ("2024-03-29", {"is_us_bank_holiday"}),
        ("2024-12-31", {"is_month_end", "is_quarter_end", "is_year_end"}),
        ("2024-07-04", {"is_us_bank_holiday"}),
        ("2024-11-29", {"is_month_end"}),  # the 30th is a Saturday
        ("2024-11-30", {"is_weekend"}),
        ("2024-05-15", set()),
    ],
)
def test_calendar_flags(date: str, flags: set[str]) -> None:
    first = int((pd.Timestamp("2024-01-01") - EPOCH).days)
    cal = day_calendar(first, 366)
    col = np.array([(pd.Timestamp(date) - pd.Timestamp("2024-01-01")).days])
    out = calendar_features(cal, col)
    on = {k for k, v in out.items() if k.startswith("is_") and bool(v[0])}
    assert on == flags
    assert out["weekday"][0] == pd.Timestamp(date).dayofweek and out["month_of_year"][0] == pd.Timestamp(date).month


def test_month_end_is_not_claimed_for_a_window_that_stops_mid_month() -> None:
    first = int((pd.Timestamp("2024-01-01") - EPOCH).days)
    cal = day_calendar(first, 10)
    assert not cal.is_month_end.any()


def test_adf_matches_statsmodels_on_gap_free_series() -> None:
    rng = np.random.default_rng(7)
    series = np.vstack([np.cumsum(rng.normal(size=300)), 50 + rng.normal(size=300), np.full(300, 5.0)])
    stat, pvalue = adf_test(series, 7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        for i in range(2):
            expected = adfuller(series[i], maxlag=7, autolag=None, regression="c")
            assert stat[i] == pytest.approx(expected[0], rel=1e-9)
            assert pvalue[i] == pytest.approx(expected[1], rel=1e-9)
    assert np.isnan(stat[2]) and np.isnan(pvalue[2]), "a constant series has no test"
    assert pvalue[1] < 0.05 < pvalue[0]


def test_pvalues_match_statsmodels_mackinnonp() -> None:
    stats = np.array([-30.0, -5.0, -3.0, -1.61, -1.0, 0.5, 2.0, 3.0])
    expected = [mackinnonp(s, regression="c", N=1) for s in stats]
    np.testing.assert_allclose(mackinnon_pvalue(stats), expected, rtol=1e-12)
    assert np.isnan(mackinnon_pvalue(np.array([np.nan]))[0])


def test_adf_skips_rows_that_touch_empty_days() -> None:
    rng = np.random.default_rng(8)
    series = (50 + rng.normal(size=300))[None, :]
    series[0, 100:110] = np.nan
    stat, _ = adf_test(series, 3)
    assert np.isfinite(stat[0]) and stat[0] < -5
    short_stat, _ = adf_test(series[:, :15], 3)  # 11 regression rows for 5 coefficients
    assert np.isnan(short_stat[0])
