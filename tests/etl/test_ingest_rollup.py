"""Daily roll-up: DuckDB's quantile_cont agrees with numpy's percentile; dedupe, coverage and days."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from capacity_forecaster.errors import SchemaError
from capacity_forecaster.etl.rollup import day_lengths, local_days, rollup_frame

DAY = pd.Timedelta(days=1)


def samples(values: list[float], start: str = "2024-01-01", step: str = "5min", server: str = "s",
            metric: str = "cpu") -> pd.DataFrame:
    times = pd.date_range(start, periods=len(values), freq=step, tz="UTC")
    return pd.DataFrame({"server_id": server, "ts": times, "metric": metric, "value": values})


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=300),
       st.floats(1.0, 100.0))
def test_rollup_percentile_is_numpy_linear(values: list[float], percentile: float) -> None:
    daily = rollup_frame(samples(values, step="1s"), percentile=percentile)
    assert daily["value"].iloc[0] == pytest.approx(np.percentile(values, percentile), rel=1e-9, abs=1e-6)
    assert daily["samples"].iloc[0] == len(values)
    assert daily["value_max"].iloc[0] == max(values)


def test_duckdb_quantile_cont_agrees_with_numpy_percentile() -> None:
    rng = np.random.default_rng(5)
    groups = rng.integers(0, 200, 20_000)
    values = rng.gamma(2.0, 20.0, len(groups))
    with duckdb.connect() as con:
        con.register("t", pa.table({"g": groups, "v": values}))
        got = con.execute("SELECT g, quantile_cont(v, 0.95) AS p FROM t GROUP BY g ORDER BY g").fetchnumpy()
    expected = [np.percentile(values[groups == g], 95) for g in got["g"]]
    np.testing.assert_allclose(got["p"], expected, rtol=1e-12)


def test_repeated_times_keep_the_first_and_input_is_not_changed() -> None:
    frame = pd.concat([samples([1.0, 2.0, 3.0]), samples([9.0])], ignore_index=True)
    shuffled = frame.sample(frac=1.0, random_state=1)
    before = shuffled.copy()
    daily = rollup_frame(shuffled)
    pd.testing.assert_frame_equal(shuffled, before)
    first_at_midnight = shuffled.loc[shuffled["ts"] == shuffled["ts"].min(), "value"].iloc[0]
    assert daily["samples"].tolist() == [3]
    assert daily["value_mean"].iloc[0] == pytest.approx((first_at_midnight + 2.0 + 3.0) / 3)


def test_series_are_separate_and_sorted() -> None:
    frame = pd.concat([samples([5.0, 6.0], server="b", metric="memory"), samples([1.0], server="a"),
                       samples([7.0], server="b", metric="cpu", start="2024-01-02")], ignore_index=True)
    daily = rollup_frame(frame, min_coverage=0.0)
    assert daily[["server_id", "metric"]].values.tolist() == [["a", "cpu"], ["b", "cpu"], ["b", "memory"]]
    assert daily["ds"].tolist() == [pd.Timestamp("2024-01-01"), pd.Timestamp("2024-01-02"),
                                    pd.Timestamp("2024-01-01")]


def test_coverage_uses_median_spacing_or_the_given_interval() -> None:
    # 144 samples at 10 minutes is a full day; a gap does not change the median spacing.
    times = pd.date_range("2024-01-01", periods=144, freq="10min", tz="UTC").delete(range(10, 20))
    frame = pd.DataFrame({"server_id": "s", "ts": times, "metric": "cpu", "value": 1.0})
    daily = rollup_frame(frame)
    assert daily["coverage"].iloc[0] == pytest.approx(134 / 144)
    nominal = rollup_frame(frame, interval_seconds=300)
    assert nominal["coverage"].iloc[0] == pytest.approx(134 / 288)
    assert nominal["low_coverage"].iloc[0]


def test_single_sample_series_borrow_the_fleet_spacing() -> None:
    frame = pd.concat([samples([1.0] * 288, server="busy"), samples([4.0], server="lonely")],
                      ignore_index=True)
    daily = rollup_frame(frame).set_index("server_id")
    assert daily.loc["busy", "coverage"] == 1.0
    assert daily.loc["lonely", "coverage"] == pytest.approx(1 / 288)
    alone = rollup_frame(samples([4.0]))
    assert alone["coverage"].tolist() == [1.0]  # nothing to compare with: read as a daily source


def test_local_days_and_dst_lengths() -> None:
    ts = pd.DatetimeIndex(["2024-03-10T04:59:59Z", "2024-03-10T05:00:00Z"]).asi8
    days = local_days(ts, "America/New_York")
    assert (pd.to_datetime(days * DAY.value)).strftime("%Y-%m-%d").tolist() == ["2024-03-09", "2024-03-10"]
    spring, autumn, plain = (pd.Timestamp(d).value // DAY.value
                             for d in ("2024-03-10", "2024-11-03", "2024-06-01"))
    lengths = day_lengths(np.array([spring, autumn, plain]), "America/New_York")
    assert lengths.tolist() == [23 * 3600.0, 25 * 3600.0, 24 * 3600.0]
    assert day_lengths(np.array([plain]), "UTC").tolist() == [86_400.0]


def test_unknown_metric_is_a_schema_error() -> None:
    with pytest.raises(SchemaError, match="metric must be one of cpu, memory, disk, network; found gpu"):
        rollup_frame(samples([1.0], metric="gpu"))


def test_empty_input_gives_typed_empty_frame() -> None:
    daily = rollup_frame(samples([]))
    assert daily.empty and daily["ds"].dtype == "datetime64[ns]" and daily["low_coverage"].dtype == bool
