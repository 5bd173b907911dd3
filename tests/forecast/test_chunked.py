"""Chunked forecasting: chunk size never changes per-series results; pooled calibration is exact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from capacity_forecaster.config import ForecastConfig, Settings
from capacity_forecaster.forecast.chunked import default_chunk_series, plan_chunks
from capacity_forecaster.forecast.intervals import calibrate
from capacity_forecaster.forecast.pooled import ALL, PooledErrors
from capacity_forecaster.forecast.stage import run_forecast
from capacity_forecaster.stages.forecast import forecast_stage
from capacity_forecaster.storage import Lake

START = pd.Timestamp("2024-01-01")


def fleet(servers: int = 5, days: int = 240, seed: int = 7) -> pd.DataFrame:
    """Seeded daily series with level, weekly season, trend and noise; one server short, one with gaps."""
    rng = np.random.default_rng(seed)
    frames = []
    for s in range(servers):
        for metric in ("cpu", "memory"):
            n = 40 if s == 1 else days
            t = np.arange(n)
            value = (30 + 10 * s + 5 * np.sin(2 * np.pi * t / 7) + 0.02 * t * (s + 1)
                     + rng.normal(0, 2 + s, n))
            if s == 2:
                value[50:60] = np.nan
            frames.append(pd.DataFrame({"server_id": f"srv-{s:02d}", "metric": metric,
                                        "ds": START + pd.to_timedelta(t, "D"), "value": np.clip(value, 0, 100)}))
    return pd.concat(frames, ignore_index=True)


def config(**kw: object) -> ForecastConfig:
    base: dict[str, object] = {"models": "seasonal_naive,harmonic,recent_level,robust_trend,ensemble",
                               "horizon": 30, "backtest_windows": 3, "n_jobs": 1}
    return ForecastConfig(**{**base, **kw})


def test_chunk_of_five_series_gives_the_whole_fleets_rows() -> None:
    data = fleet()
    whole = run_forecast(data, config(chunk_series=1_000))
    chunked = run_forecast(data, config(chunk_series=5))
    assert whole.summary["series"] == 10
    for name in ("forecasts", "backtests", "backtest_forecasts", "failures", "triage"):
        # Same rows, models and flags; numbers equal up to the rounding of batched linear algebra.
        pd.testing.assert_frame_equal(getattr(chunked, name), getattr(whole, name), obj=name, rtol=1e-9, atol=1e-9)
    drop = ("seconds", "units", "backtest_units", "final_units")  # more chunks, more (smaller) units
    assert {k: v for k, v in chunked.summary.items() if k not in drop} == \
        {k: v for k, v in whole.summary.items() if k not in drop}
    def fitted(result: object) -> set[tuple[str, tuple[str, str]]]:  # batches differ, not what was fitted
        return {(f.model, s) for f in result.fitted for s in f.series}  # type: ignore[attr-defined]

    assert fitted(chunked) == fitted(whole)


def test_plan_chunks_keeps_servers_whole_and_in_order() -> None:
    series = pd.DataFrame({"server_id": ["b", "a", "a", "c", "b", "d", "d", "d"],
                           "metric": ["cpu", "cpu", "memory", "cpu", "memory", "cpu", "memory", "disk"]})
    chunks = plan_chunks(series, 3)
    assert [c.servers for c in chunks] == [["a"], ["b", "c"], ["d"]]
    assert [c.n_series for c in chunks] == [2, 3, 3]
    assert [c.servers for c in plan_chunks(series, 1)] == [["a"], ["b"], ["c"], ["d"]]  # a server is never split
    assert sum(c.n_series for c in plan_chunks(series, 100)) == 8


def test_default_chunk_size_follows_available_memory_within_bounds() -> None:
    assert default_chunk_series(0) == 250
    assert default_chunk_series(10**9 * 4) < default_chunk_series(10**9 * 8) <= 1_000
    assert default_chunk_series(10**12) == 1_000
    assert 250 <= default_chunk_series() <= 1_000


@pytest.mark.parametrize("level", [0.8, 0.5, 0.95])
def test_pooled_quantiles_streamed_in_chunks_equal_the_whole_fleets(level: float) -> None:
    rng = np.random.default_rng(11)
    n = 6_000
    rows = pd.DataFrame({
        "server_id": rng.choice([f"s{i}" for i in range(40)], n), "metric": rng.choice(["cpu", "disk"], n),
        "model": rng.choice(["a", "b"], n), "bucket": rng.integers(0, 3, n), "window": rng.integers(0, 3, n),
        "abs_error": np.where(rng.random(n) < 0.05, np.nan, rng.exponential(2.0, n) * (rng.random(n) > 0.1)),
        "scale": rng.choice([0.0, 0.5, 1.0, 3.0, np.nan], n),
    })
    pooled = PooledErrors(level)
    parts = np.array_split(np.arange(n), 7)
    for part in parts:
        pooled.add(rows.iloc[part])
    pooled.plan()
    for part in parts:
        pooled.collect(rows.iloc[part])
    tables = pooled.tables()
    keys = ["model", "metric", "bucket"]
    for held, train in [(ALL, rows), *[(w, rows[rows["window"] != w]) for w in range(3)]]:
        want = calibrate(train, level).pooled.sort_values(keys).reset_index(drop=True)
        got = tables[held].sort_values(keys).reset_index(drop=True)
        pd.testing.assert_frame_equal(got[[*keys, "q"]], want[[*keys, "q"]], check_dtype=False)
        assert (got["n"].to_numpy() == want["n"].to_numpy()).all()


def test_stage_streams_chunks_through_the_lake_with_the_whole_fleets_rows(tmp_path: Path) -> None:
    data = fleet(servers=4)
    processed = data.assign(value_raw=data["value"], is_imputed=False, is_outlier=False, is_anomaly=False,
                            anomaly_score=0.0)
    lake = Lake.open(str(tmp_path / "lake"), for_writing=True)
    lake.write_table("metrics", processed)
    whole = run_forecast(data, config(chunk_series=1_000))
    calls: list[tuple[str, int, int]] = []
    run = forecast_stage(lake, Settings(forecast=config(chunk_series=3)),
                         progress=lambda phase, done, total: calls.append((phase, done, total)))
    assert run.counts["chunks"] == 4 and run.counts["series"] == 8
    sort = {"forecasts": ["server_id", "metric", "ds"], "forecast_triage": ["server_id", "metric"]}
    for name, frame in (("forecasts", whole.forecasts), ("forecast_triage", whole.triage)):
        stored = lake.read_table(name).sort_values(sort[name]).reset_index(drop=True)
        want = frame.sort_values(sort[name]).reset_index(drop=True)
        for col in want.columns:
            if pd.api.types.is_float_dtype(want[col]):
                # Batched linear algebra rounds differently for other batches (~1e-13), nothing more.
                np.testing.assert_allclose(stored[col].to_numpy(dtype=float), want[col].to_numpy(dtype=float),
                                           rtol=1e-9, atol=1e-9)
    assert lake.table_info("backtests").rows == len(whole.backtests)  # type: ignore[union-attr]
    assert lake.table_info("backtest_forecasts").rows == len(whole.backtest_forecasts)  # type: ignore[union-attr]
    # Models saved chunk by chunk never reuse a name: every manifest written is in the run's list.
    assert sorted(run.artifacts) == sorted(p for p in lake.list_files("models") if p.endswith(".json"))
    assert {s for f in whole.fitted for s in f.series} == {(srv, m) for srv in data["server_id"].unique()
                                                           for m in ("cpu", "memory")}
    assert [c for c in calls if c[0] == "backtests"][-1][1:] == (8, 8)
