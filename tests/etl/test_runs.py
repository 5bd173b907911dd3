"""Weighted samples: the weighted daily percentile against numpy, and runs split at day boundaries."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from capacity_forecaster.etl.days import DAY_NS
from capacity_forecaster.etl.rollup import Samples, rollup_daily
from capacity_forecaster.etl.runs import split_runs, weighted_daily

values = st.lists(st.floats(0.0, 150.0, allow_nan=False), min_size=1, max_size=40)
quantiles = st.floats(0.01, 1.0)


@given(values, quantiles)
@settings(max_examples=200, deadline=None)
def test_unit_weights_give_numpy_linear_percentile(vals: list[float], q: float) -> None:
    v = np.array(vals)
    out = weighted_daily(np.zeros(len(v), np.int64), np.zeros(len(v), np.int64), v, np.ones(len(v)), q)
    np.testing.assert_allclose(out["p"], [np.percentile(v, 100 * q)], rtol=1e-12, atol=1e-9)
    assert out["n"].tolist() == [len(v)] and out["mx"].tolist() == [v.max()]


@given(st.lists(st.tuples(st.floats(0.0, 150.0, allow_nan=False), st.integers(1, 6),
                          st.integers(0, 2), st.integers(0, 1)), min_size=1, max_size=40), quantiles)
@settings(max_examples=200, deadline=None)
def test_integer_weights_equal_the_expanded_sample(rows: list[tuple[float, int, int, int]], q: float) -> None:
    v, w, day, series = (np.array(c) for c in zip(*rows, strict=True))
    out = weighted_daily(series.astype(np.int64), day.astype(np.int64), v.astype(float), w.astype(float), q)
    frame = pd.DataFrame({"s": np.repeat(series, w), "d": np.repeat(day, w), "v": np.repeat(v, w)})
    expected = frame.groupby(["s", "d"])["v"].agg(lambda x: np.percentile(x, 100 * q))
    assert list(zip(out["s"], out["d"], strict=True)) == list(expected.index)
    np.testing.assert_allclose(out["p"], expected.to_numpy(), rtol=1e-12, atol=1e-9)
    mean = frame.groupby(["s", "d"])["v"].mean().to_numpy()
    np.testing.assert_allclose(out["mean"], mean, rtol=1e-9, atol=1e-9)


@given(st.lists(st.tuples(st.integers(0, 3 * 288), st.integers(1, 700)), min_size=1, max_size=20))
@settings(max_examples=100, deadline=None)
def test_split_runs_counts_each_slot_on_its_own_day(runs: list[tuple[int, int]]) -> None:
    start_slot, weight = (np.array(c) for c in zip(*runs, strict=True))
    ts = start_slot.astype(np.int64) * 300 * 10**9 + 7 * 10**9  # 7 s past the 5-minute grid
    run, day, piece = split_runs(ts, weight.astype(float), 300.0, "UTC")
    step = np.arange(weight.sum()) - np.repeat(np.cumsum(weight) - weight, weight)
    slots = np.repeat(ts, weight) + step * 300 * 10**9
    expected = pd.Series(1.0, index=pd.MultiIndex.from_arrays([np.repeat(np.arange(len(ts)), weight), slots // DAY_NS]))
    got = pd.Series(piece, index=pd.MultiIndex.from_arrays([run, day]))
    pd.testing.assert_series_equal(got[got > 0].sort_index(), expected.groupby(level=[0, 1]).sum(),
                                   check_names=False)


def test_a_run_over_midnight_counts_on_both_days_in_a_time_zone() -> None:
    # 22:00 UTC = 23:00 in Amsterdam (winter): 24 five-minute samples, 12 before local midnight.
    ts = np.array([pd.Timestamp("2024-01-10 22:00", tz="UTC").value])
    samples = Samples(np.zeros(1, np.int32), np.zeros(1, np.int8), ts, np.array([50.0]), np.zeros(1, np.int64),
                      np.array([24.0]))
    daily = rollup_daily(samples, ["a"], 95.0, 0.5, "Europe/Amsterdam", 300.0)
    assert daily["ds"].dt.strftime("%Y-%m-%d").tolist() == ["2024-01-10", "2024-01-11"]
    assert daily["samples"].tolist() == [12, 12]
    np.testing.assert_allclose(daily["coverage"], [12 / 288, 12 / 288])
