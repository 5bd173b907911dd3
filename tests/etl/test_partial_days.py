"""Partial days: run-length pieces, which days are staged, and pooling staged samples into a later ingest."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.fs as pafs
from hypothesis import given, settings
from hypothesis import strategies as st

from capacity_forecaster.config import IngestConfig, Settings
from capacity_forecaster.etl.days import DAY_NS, local_days
from capacity_forecaster.etl.ingest import ingest
from capacity_forecaster.etl.mapping import parse_mapping
from capacity_forecaster.etl.partial_days import day_pieces, pool_staged, stage_partial_days
from capacity_forecaster.etl.rollup import DAILY_COLUMNS, Samples, rollup_daily
from capacity_forecaster.stages.raw import ingest_stage
from capacity_forecaster.storage import Lake

START = pd.Timestamp("2024-03-01 03:00")
LONG = {"layout": "long", "server_id": {"column": "server"}, "timestamp": {"column": "time"},
        "long": {"value": "value", "metric": "cpu"}}


def local(uri: str) -> tuple[pafs.FileSystem, str]:
    return pafs.LocalFileSystem(), os.path.abspath(uri)


def runs(seed: int, n: int = 400) -> Samples:
    """Run-length samples of two series, 5 minutes apart, some with fractional weights."""
    rng = np.random.default_rng(seed)
    weight = rng.integers(1, 60, n).astype(np.float64)
    weight[rng.random(n) < 0.2] -= 0.5
    weight = np.maximum(weight, 0.5)
    series = np.repeat([0, 1], n // 2)
    ts = np.empty(n, dtype=np.int64)
    for s in (0, 1):
        idx = np.flatnonzero(series == s)
        gaps = np.ceil(weight[idx]) + rng.integers(0, 3, len(idx))
        ts[idx] = START.value + np.r_[0, np.cumsum(gaps[:-1])].astype(np.int64) * 300 * 10**9
    return Samples(series.astype(np.int32), np.zeros(n, dtype=np.int8), ts, rng.uniform(0, 100, n),
                   np.arange(n, dtype=np.int64), weight)


def test_day_pieces_stay_within_a_day_and_roll_up_like_the_runs() -> None:
    for zone in ("UTC", "Europe/Berlin"):
        samples = runs(1)
        pieces = day_pieces(samples, 300.0, zone)
        assert len(pieces) > len(samples)  # some runs cross midnight
        assert pieces.weight is not None and samples.weight is not None
        last = pieces.ts + ((np.ceil(pieces.weight) - 1) * 300e9).astype(np.int64)
        assert (local_days(pieces.ts, zone) == local_days(last, zone)).all()
        assert np.isclose(pieces.weight.sum(), samples.weight.sum())
        names = ["a", "b"]
        by_runs = rollup_daily(samples, names, 95.0, 0.5, zone, 300.0)
        by_pieces = rollup_daily(pieces, names, 95.0, 0.5, zone, 300.0)
        pd.testing.assert_frame_equal(by_pieces.drop(columns="value_mean"), by_runs.drop(columns="value_mean"),
                                      check_exact=True)
        np.testing.assert_allclose(by_pieces["value_mean"], by_runs["value_mean"], rtol=1e-12)


def samples_at(times: pd.DatetimeIndex) -> Samples:
    n = len(times)
    return Samples(np.zeros(n, dtype=np.int32), np.zeros(n, dtype=np.int8), times.as_unit("ns").asi8,
                   np.linspace(0, 100, n), np.arange(n, dtype=np.int64))


def test_only_incomplete_first_and_last_days_are_staged() -> None:
    five = pd.date_range("2024-03-01 06:00", "2024-03-05 05:55", freq="5min")
    gap = (five >= "2024-03-03 10:00") & (five < "2024-03-03 11:00")  # an outage inside the run
    new = samples_at(five[~gap])
    pooled = pool_staged(new, None, ["a"], "UTC")
    daily = rollup_daily(new, ["a"], 95.0, 0.5, "UTC")
    assert daily["coverage"].lt(1).tolist() == [True, False, True, False, True]
    staged, pooled_days, carry = stage_partial_days(pooled, daily, ["a"], 4, None)
    # The first and last day may be extended by another export; the outage day cannot.
    assert sorted(staged["ds"].dt.strftime("%m-%d").unique()) == ["03-01", "03-05"]
    assert len(staged) == 18 * 12 + 6 * 12 and pooled_days.empty and carry.days_staged == 2
    # 03-01 is 4 days before the last day, beyond a window of 3, but the run's own first day is staged
    # whatever the window: an older export ingested later completes it (newest-first ingests).
    staged, _, _ = stage_partial_days(pooled, daily, ["a"], 3, None)
    assert sorted(staged["ds"].dt.strftime("%m-%d").unique()) == ["03-01", "03-05"]


def test_a_single_sample_without_an_interval_is_staged_as_incomplete() -> None:
    one = samples_at(pd.DatetimeIndex(["2024-03-01 23:55"]))
    daily = rollup_daily(one, ["a"], 95.0, 0.5, "UTC")
    assert daily["coverage"].tolist() == [1.0]  # no spacing to measure: one expected sample
    staged, _, _ = stage_partial_days(pool_staged(one, None, ["a"], "UTC"), daily, ["a"], 3, None)
    assert len(staged) == 1
    staged, _, _ = stage_partial_days(pool_staged(one, None, ["a"], "UTC"), daily, ["a"], 3, 86_400.0)
    assert staged.empty


def test_a_staged_sample_delivered_again_is_one_sample_with_the_new_value() -> None:
    times = pd.date_range("2024-03-01 00:00", "2024-03-01 11:55", freq="5min")
    first = samples_at(times)
    daily = rollup_daily(first, ["a"], 95.0, 0.5, "UTC")
    staged, _, _ = stage_partial_days(pool_staged(first, None, ["a"], "UTC"), daily, ["a"], 3, None)
    later = pd.date_range("2024-03-01 11:00", "2024-03-01 23:55", freq="5min")
    second = samples_at(later)
    pooled = pool_staged(second, staged, ["a"], "UTC")
    assert pooled.repeats == 12 and pooled.conflicts == 12 and "staged" in pooled.example
    assert len(pooled.samples) == 288
    day = rollup_daily(pooled.samples, ["a"], 95.0, 0.5, "UTC")
    assert day["samples"].tolist() == [288] and day["coverage"].tolist() == [1.0]
    # 11:00-11:55 carry the new run's values
    values = pd.Series(pooled.samples.value, index=pooled.samples.ts)
    np.testing.assert_array_equal(values.loc[later[:12].asi8].to_numpy(), second.value[:12])
    rest, pooled_days, carry = stage_partial_days(pooled, day, ["a"], 3, None)
    assert rest.empty and carry.days_completed == 1 and pooled_days["ds"].tolist() == [pd.Timestamp("2024-03-01")]


def test_repeats_are_found_at_the_microseconds_the_lake_stores() -> None:
    times = pd.DatetimeIndex(pd.date_range("2024-03-01 00:00", periods=12, freq="5min").asi8 + 123)  # +123 ns
    first = samples_at(times)
    daily = rollup_daily(first, ["a"], 95.0, 0.5, "UTC")
    staged, _, _ = stage_partial_days(pool_staged(first, None, ["a"], "UTC"), daily, ["a"], 3, None)
    staged["ts"] = staged["ts"].dt.floor("us")  # what a Delta table gives back
    again = pool_staged(first, staged, ["a"], "UTC")
    assert again.repeats == 12 and again.conflicts == 0 and len(again.samples) == 12


def test_ingest_pools_staged_samples_of_another_file(tmp_path: Path) -> None:
    times = pd.date_range("2024-03-01 00:00", "2024-03-02 23:55", freq="5min")
    frame = pd.DataFrame({"server": "a", "time": times.strftime("%Y-%m-%dT%H:%M:%SZ"),
                          "value": np.round(np.random.default_rng(0).uniform(0, 100, len(times)), 2)})
    noon = len(times) // 2 + 144  # 2024-03-02 12:00
    frame[:noon].to_csv(tmp_path / "a.csv", index=False)
    frame[noon:].to_csv(tmp_path / "b.csv", index=False)
    frame.to_csv(tmp_path / "all.csv", index=False)
    mapping = parse_mapping(LONG)
    whole = ingest([str(tmp_path / "all.csv")], mapping, IngestConfig(), local)
    first = ingest([str(tmp_path / "a.csv")], mapping, IngestConfig(), local)
    second = ingest([str(tmp_path / "b.csv")], mapping, IngestConfig(), local, first.partial_days)
    pd.testing.assert_frame_equal(second.raw_metrics, whole.raw_metrics.iloc[1:].reset_index(drop=True))
    assert second.carryover.days_completed == 1 and second.partial_days.empty
    assert second.rows_used == second.rows_read == len(times) - noon  # pooled samples are not this run's rows


@settings(max_examples=12, deadline=None)
@given(cuts=st.lists(st.integers(1, 3 * 288 - 1), min_size=1, max_size=3, unique=True),
       order=st.randoms(use_true_random=False), seed=st.integers(0, 1000))
def test_any_cuts_in_any_order_give_the_raw_rows_of_one_ingest(cuts: list[int], order, seed: int) -> None:
    """Nothing is lost or counted twice however an export is cut and in whatever order the parts arrive."""
    rng = np.random.default_rng(seed)
    times = pd.date_range("2024-03-01 02:00", periods=3 * 288, freq="5min")
    keep = rng.random(len(times)) > 0.05
    frame = pd.DataFrame({"server": "a", "time": times[keep].strftime("%Y-%m-%dT%H:%M:%SZ"),
                          "value": np.round(rng.uniform(0, 100, int(keep.sum())), 2)})
    position = np.flatnonzero(keep)
    bounds = [0, *sorted(int(np.searchsorted(position, c)) for c in cuts), len(frame)]
    parts = [frame[lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:], strict=True) if hi > lo]
    order.shuffle(parts)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        (folder / "m.yaml").write_text("layout: long\nserver_id: {column: server}\ntimestamp: {column: time}\n"
                                       "long: {value: value, metric: cpu}\n")
        frame.to_csv(folder / "all.csv", index=False)
        whole = Lake.open(str(folder / "whole"), for_writing=True)
        ingest_stage(whole, Settings(), [str(folder / "all.csv")], str(folder / "m.yaml"))
        lake = Lake.open(str(folder / "lake"), for_writing=True)
        for i, part in enumerate(parts):
            part.to_csv(folder / f"p{i}.csv", index=False)
            ingest_stage(lake, Settings(), [str(folder / f"p{i}.csv")], str(folder / "m.yaml"))
        got, expected = (t.read_table("raw_metrics")[list(DAILY_COLUMNS)].sort_values("ds", ignore_index=True)
                         for t in (lake, whole))
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    assert got["samples"].sum() == len(frame)
    assert (got["ds"].to_numpy(dtype="datetime64[ns]").view(np.int64) % DAY_NS == 0).all()
