"""Conformal intervals: the quantile rule, horizon buckets, pooling, clipping and coverage near nominal."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from capacity_forecaster.forecast import intervals
from capacity_forecaster.forecast.intervals import (
    BUCKET_WIDTH_UNIT,
    apply_bounds,
    calibrate,
    choose_pooling,
    conformal_quantile,
    cross_window_bounds,
    cross_window_pooling,
    horizon_bucket,
)


def _range(bucket: np.ndarray) -> list[tuple[int, int]]:
    """(width, index) of bucket ids."""
    return [(int(b) // BUCKET_WIDTH_UNIT, int(b) % BUCKET_WIDTH_UNIT) for b in bucket]


def test_horizon_buckets() -> None:
    assert _range(horizon_bucket(np.array([1, 30, 31, 180]), 180)) == [(30, 0), (30, 0), (30, 1), (30, 5)]
    assert _range(horizon_bucket(np.arange(1, 6), 5)) == [(1, 0), (1, 1), (1, 2), (1, 3), (1, 4)]
    assert _range(horizon_bucket(np.array([1, 8, 9, 48]), 48)) == [(8, 0), (8, 0), (8, 1), (8, 5)]
    # One lead per step (each series' scored lead), with a floor on the width; ids differ with the width, so a
    # pool never mixes steps 1-2 of a 9-day lead with steps 1-30 of a 180-day one.
    assert _range(horizon_bucket(np.array([1, 3, 4, 9, 9]), np.array([9, 9, 9, 9, 180]))) == [
        (2, 0), (2, 1), (2, 1), (2, 4), (30, 0)]
    assert _range(horizon_bucket(np.array([5, 6, 15]), 15, min_width=5)) == [(5, 0), (5, 1), (5, 2)]


def test_conformal_quantile_rank() -> None:
    frame = pd.DataFrame({"g": ["a"] * 10 + ["b"] * 3, "r": [*range(10, 0, -1), 5.0, 1.0, np.nan]})
    out = conformal_quantile(frame, ["g"], "r", 0.8).set_index("g")
    assert out.loc["a", "q"] == 9  # ceil(11 * 0.8) = 9th smallest of 1..10
    assert out.loc["a", "n"] == 10
    assert out.loc["b", "q"] == 5.0 and out.loc["b", "n"] == 2  # rank ceil(3 * 0.8) = 3 > n: the largest
    rng = np.random.default_rng(0)
    many = pd.DataFrame({"a": rng.choice(list("xyz"), 500), "b": rng.choice(list("pq"), 500), "r": rng.random(500)})
    table = conformal_quantile(many, ["a", "b"], "r", 0.9).set_index(["a", "b"])
    for key, group in many.groupby(["a", "b"]):
        values = np.sort(group["r"].to_numpy())
        rank = min(int(np.ceil((len(values) + 1) * 0.9)) - 1, len(values) - 1)
        assert table.loc[key, "q"] == values[rank] and table.loc[key, "n"] == len(values)


def _residuals(n_series: int, windows: int, steps: int, rng: np.random.Generator) -> pd.DataFrame:
    sd = rng.uniform(1, 8, n_series)
    rows = []
    for i in range(n_series):
        for w in range(windows):
            err = rng.normal(0, sd[i], steps)
            rows.append(pd.DataFrame({"server_id": f"s{i}", "metric": "cpu", "model": "m", "window": w,
                                      "bucket": horizon_bucket(np.arange(1, steps + 1), steps), "y": 50 + err,
                                      "yhat": 50.0, "yhat_lower": np.nan, "yhat_upper": np.nan,
                                      "abs_error": np.abs(err), "scale": sd[i]}))
    return pd.concat(rows, ignore_index=True)


def test_cross_window_coverage_is_close_to_nominal() -> None:
    rng = np.random.default_rng(7)
    res = _residuals(n_series=40, windows=3, steps=180, rng=rng)
    bounds = cross_window_bounds(res, 0.8)
    lo, hi = bounds["series"]
    inside = (lo <= res["y"]) & (res["y"] <= hi)
    assert 0.77 <= inside.mean() <= 0.85
    per_series = inside.groupby(res["server_id"]).mean()
    assert per_series.between(0.65, 0.95).all()  # per-series quantiles adapt to each series' spread
    pooled_inside = (bounds["pooled"][0] <= res["y"]) & (res["y"] <= bounds["pooled"][1])
    assert 0.77 <= pooled_inside.mean() <= 0.85  # the scale carries each series' spread into the pool
    table = choose_pooling(res, bounds, 0.8)
    assert table[["model", "metric"]].values.tolist() == [["m", "cpu"]]
    expected = abs(table["coverage_pooled"][0] - 0.8) < abs(table["coverage_series"][0] - 0.8)
    assert table["pooled"][0] == expected and table["coverage_series"][0] == pytest.approx(inside.mean())


def test_smooth_errors_choose_pooled_quantiles() -> None:
    """A series whose error is one level for a whole window: its own quantile from other windows misses."""
    rng = np.random.default_rng(3)
    res = _residuals(n_series=40, windows=3, steps=90, rng=rng)  # 30 steps per bucket: per-series quantiles
    offset = rng.normal(0, 1, (40, 3))  # one error per series and window, repeated over every step
    res["abs_error"] = np.abs(offset[res["server_id"].str[1:].astype(int), res["window"]]) * res["scale"]
    res["y"] = res["yhat"] + res["abs_error"]
    table = choose_pooling(res, cross_window_bounds(res, 0.8), 0.8)
    assert bool(table["pooled"][0]) and table["coverage_series"][0] < 0.72  # ~2/3: the max of two draws
    assert abs(table["coverage_pooled"][0] - 0.8) < abs(table["coverage_series"][0] - 0.8)


def test_pooled_fallback_scales_to_the_series() -> None:
    rng = np.random.default_rng(1)
    res = _residuals(n_series=30, windows=1, steps=12, rng=rng)  # 2 errors per bucket: too few per series
    cal = calibrate(res, 0.8)
    assert cal.series.empty and not cal.pooled.empty
    first = int(horizon_bucket(np.array([1]), 12)[0])
    targets = pd.DataFrame({"server_id": ["new", "new"], "metric": "cpu", "model": "m", "bucket": [first, first],
                            "scale": [1.0, 2.0]})
    half, pooled = cal.half_widths(targets)
    assert pooled.all() and half[1] == pytest.approx(2 * half[0])
    unknown = targets.assign(model="other")
    half_unknown, pooled_unknown = cal.half_widths(unknown)
    assert np.isnan(half_unknown).all() and not pooled_unknown.any()


def test_apply_bounds_clips_and_keeps_own_bounds_without_calibration() -> None:
    lo, hi = apply_bounds(np.array([5.0, 95.0, 50.0]), np.array([10.0, 10.0, np.nan]),
                          np.array([0.0, 0.0, 40.0]), np.array([0.0, 0.0, 70.0]))
    assert lo.tolist() == [0.0, 85.0, 40.0]
    assert hi.tolist() == [15.0, 100.0, 70.0]


def test_a_window_interval_never_uses_that_window_errors() -> None:
    """Blowing up the newest window's errors leaves its bounds alone and widens the other windows'."""
    rng = np.random.default_rng(9)
    res = _residuals(n_series=5, windows=3, steps=60, rng=rng)  # 10 per bucket: per-series and pooled
    newest = (res["window"] == 2).to_numpy()
    shaken = res.copy()
    shaken.loc[newest, "abs_error"] *= 50.0
    shaken.loc[newest, "y"] = shaken.loc[newest, "yhat"] + shaken.loc[newest, "abs_error"]
    before, after = cross_window_bounds(res, 0.8), cross_window_bounds(shaken, 0.8)
    for name in ("series", "pooled"):
        for side in (0, 1):
            np.testing.assert_array_equal(before[name][side][newest], after[name][side][newest])
        assert (after[name][1][~newest] > before[name][1][~newest] + 1.0).mean() > 0.5
    assert (cross_window_pooling(res, before, 0.8)[newest] == cross_window_pooling(shaken, after, 0.8)[newest]).all()


def test_pooling_choice_for_a_window_is_made_on_the_other_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    res = _residuals(n_series=4, windows=3, steps=30, rng=np.random.default_rng(2))
    bounds = cross_window_bounds(res, 0.8)
    seen: list[set[int]] = []
    real = intervals.choose_pooling

    def spy(residuals: pd.DataFrame, b: dict[str, tuple[np.ndarray, np.ndarray]], level: float) -> pd.DataFrame:
        assert all(len(lo) == len(residuals) for lo, _ in b.values())
        seen.append(set(residuals["window"].tolist()))
        return real(residuals, b, level)

    monkeypatch.setattr(intervals, "choose_pooling", spy)
    out = cross_window_pooling(res, bounds, 0.8)
    assert sorted(map(sorted, seen)) == [[0, 1], [0, 2], [1, 2]] and out.shape == (len(res),)
    single = res[res["window"] == 0]
    seen.clear()
    cross_window_pooling(single, {k: (lo[:len(single)], hi[:len(single)]) for k, (lo, hi) in bounds.items()}, 0.8)
    assert seen == [{0}]  # one window: nothing else to choose on
