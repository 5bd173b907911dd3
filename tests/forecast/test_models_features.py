"""Building blocks of the models: calendar regressors, the panel layout, batched ridge, booster features."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from capacity_forecaster.forecast.calendar_features import (
    EVENT_NAMES,
    calendar_features,
    event_regressors,
    fourier_terms,
)
from capacity_forecaster.forecast.models.batched_ridge import SharedDesign, normal_equations, ridge_solve
from capacity_forecaster.forecast.models.gbm_features import FEATURE_NAMES, feature_matrix, origin_stats
from capacity_forecaster.forecast.models.panel import fill_gaps, row_quantiles, to_panel


def days(*isos: str) -> np.ndarray:
    return np.array(isos, dtype="datetime64[D]")


def test_calendar_knows_nyse_holidays_and_last_business_days() -> None:
    # Good Friday 2024-03-29 closes the NYSE, so Thursday 28 March is the quarter's last business day.
    cal = calendar_features(days("2024-03-27", "2024-03-28", "2024-03-29", "2024-07-04", "2024-12-31"))
    assert cal.is_holiday.tolist() == [False, False, True, True, False]
    assert cal.month_end_rank.tolist() == [1, 0, -1, -1, 0]
    assert cal.is_quarter_month.tolist() == [True, True, True, False, True]
    assert cal.is_year_end.tolist() == [False, False, False, False, True]
    events = event_regressors(cal)
    named = dict(zip(EVENT_NAMES, events.T, strict=True))
    assert named["quarter_end_0"].tolist() == [0, 1, 0, 0, 1]
    assert named["month_end_1"].tolist() == [1, 0, 0, 0, 0]
    assert named["holiday"].tolist() == [0, 0, 1, 1, 0]


def test_calendar_maps_hourly_timestamps_to_their_day() -> None:
    ts = np.array(["2024-07-04T00:00", "2024-07-04T13:00", "2024-07-05T23:00"], dtype="datetime64[ns]")
    cal = calendar_features(ts)
    assert cal.hour.tolist() == [0, 13, 23]
    assert cal.is_holiday.tolist() == [True, True, False]
    assert cal.weekday.tolist() == [3, 3, 4]


def test_fourier_terms_are_phased_on_absolute_time() -> None:
    ts = np.arange(np.datetime64("2024-01-01"), np.datetime64("2026-01-01"))
    terms = fourier_terms(ts, 365.25, 3)
    assert terms.shape == (len(ts), 6)
    # The same calendar day a year apart lands on (almost) the same phase, whatever the window start.
    np.testing.assert_allclose(terms[0], terms[366], atol=0.05)
    np.testing.assert_allclose(fourier_terms(ts[100:], 365.25, 3), terms[100:])


def test_panel_right_aligns_series_of_different_lengths_and_keeps_gaps() -> None:
    history = pd.DataFrame(
        {
            "server_id": ["b", "b", "a", "a", "a"],
            "metric": "cpu",
            "ds": pd.to_datetime(["2024-01-02", "2024-01-03", "2024-01-01", "2024-01-03", "2024-01-04"]),
            "value": [1.0, 2.0, 3.0, 4.0, 5.0],
        }
    )
    panel = to_panel(history, "D")
    assert panel.server_id.tolist() == ["a", "b"]
    np.testing.assert_array_equal(panel.values, [[3.0, np.nan, 4.0, 5.0], [np.nan, np.nan, 1.0, 2.0]])
    assert panel.end.astype("datetime64[D]").tolist() == list(days("2024-01-04", "2024-01-03"))
    assert panel.length.tolist() == [4, 2]


def test_panel_keeps_the_time_zone_of_hourly_input() -> None:
    from capacity_forecaster.forecast.registry import get_model

    ds = pd.date_range("2024-03-04", periods=72, freq="h", tz="UTC")
    history = pd.DataFrame({"server_id": "a", "metric": "cpu", "ds": ds, "value": 10.0})
    pred = get_model("seasonal_naive").fit(history, freq="h").predict(3)
    assert pred["ds"].dt.tz is not None
    assert pred["ds"].iloc[0] == ds[-1] + pd.Timedelta(hours=1)


def test_row_quantiles_match_numpy_nanquantile() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 40))
    a[rng.random(a.shape) < 0.2] = np.nan
    q = np.array([0.1, 0.5, 0.9])
    np.testing.assert_allclose(row_quantiles(a, q), np.nanquantile(a, q, axis=1).T)
    assert np.isnan(row_quantiles(np.full((1, 3), np.nan), q)).all()


def test_fill_gaps_interpolates_inside_and_carries_the_ends() -> None:
    out = fill_gaps(np.array([[np.nan, 1.0, np.nan, 3.0, np.nan], [np.nan] * 5]))
    np.testing.assert_array_equal(out[0], [1.0, 1.0, 2.0, 3.0, 3.0])
    assert np.isnan(out[1]).all()


def test_batched_ridge_matches_per_series_least_squares() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 4))
    y = rng.normal(size=(3, 60))
    weights = np.ones((3, 60))
    weights[1, :10] = 0.0  # missing points
    weights[2, 5] = 0.3  # a down-weighted outlier
    penalty = np.array([0.0, 0.5, 1.0, 2.0]) + 1e-9
    coef = ridge_solve(normal_equations(SharedDesign(x), y, weights), penalty)
    for s in range(3):
        w = weights[s]
        expected = np.linalg.solve((x * w[:, None]).T @ x + np.diag(penalty), (x * w[:, None]).T @ y[s])
        np.testing.assert_allclose(coef[s], expected, rtol=1e-8, atol=1e-10)

    extra, scale = rng.normal(size=(60, 2)), rng.normal(size=(3, 60))
    eq = normal_equations(SharedDesign(x), y, weights, extra=extra, scale=scale)
    coef = ridge_solve(eq, np.full(6, 1e-9))
    for s in range(3):
        design = np.concatenate([x, extra * scale[s][:, None]], axis=1)
        w = weights[s]
        expected = np.linalg.solve((design * w[:, None]).T @ design + 1e-9 * np.eye(6), (design * w[:, None]).T @ y[s])
        np.testing.assert_allclose(coef[s], expected, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("origin", [200, 400, 500])
def test_booster_features_use_nothing_after_the_origin(origin: int) -> None:
    rng = np.random.default_rng(2)
    values = 30.0 + rng.normal(0.0, 3.0, (2, 800))
    ts = np.arange(np.datetime64("2023-01-01"), np.datetime64("2023-01-01") + 800)
    ts = np.broadcast_to(ts, values.shape).astype("datetime64[ns]")
    cal = calendar_features(ts)
    changed = values.copy()
    changed[:, origin + 1 :] += rng.normal(0.0, 20.0, (2, 800 - origin - 1))
    series = np.repeat([0, 1], 150)
    ahead = np.tile(np.arange(1, 151), 2)
    rows = [
        feature_matrix(origin_stats(v, cal), cal, np.array([0, 1]), series, np.full(300, origin), ahead)
        for v in (values, changed)
    ]
    np.testing.assert_array_equal(rows[0], rows[1])
    assert rows[0].shape == (300, len(FEATURE_NAMES))
    # The year-ago analogues exist once a year of history lies behind the origin.
    year_ago = rows[0][:, FEATURE_NAMES.index("year_ago_change")]
    assert np.isfinite(year_ago).any() == (origin >= 364)
