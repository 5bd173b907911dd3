"""Accuracy metrics against hand-computed numbers, and the long-frame scorer against the kernels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from capacity_forecaster.forecast.metrics import coverage, mae, mape, mase, rmse, score, seasonal_scale, smape

Y = np.array([10.0, 20.0, 0.0, np.nan])
YHAT = np.array([12.0, 18.0, 1.0, 5.0])


def test_kernels_by_hand() -> None:
    assert mae(Y, YHAT) == pytest.approx(5 / 3)  # (2 + 2 + 1) / 3; the unknown actual is left out
    assert rmse(Y, YHAT) == pytest.approx(np.sqrt(3.0))  # sqrt((4 + 4 + 1) / 3)
    assert mape(Y, YHAT) == pytest.approx((0.2 + 0.1) / 2)  # the zero actual is left out
    assert smape(Y, YHAT) == pytest.approx((2 / 22 + 2 / 38 + 1 / 1) / 3)
    assert smape([0.0], [0.0]) == 0.0
    assert mase(Y, YHAT, scale=2.0) == pytest.approx(5 / 6)
    assert np.isnan(mase(Y, YHAT, scale=0.0))
    assert coverage(Y, YHAT - 1.5, YHAT + 1.5) == pytest.approx(1 / 3)  # only |error| = 1 is inside
    assert np.isnan(mae([np.nan], [1.0]))


def test_score_matches_the_kernels_per_group() -> None:
    rng = np.random.default_rng(0)
    n = 40
    frame = pd.DataFrame({
        "server_id": np.repeat(["a", "b"], n // 2), "metric": "cpu", "model": "m",
        "y": rng.uniform(0, 100, n), "yhat": rng.uniform(0, 100, n),
    })
    frame.loc[3, "y"] = np.nan
    frame.loc[5, "y"] = 0.0
    frame["yhat_lower"] = frame["yhat"] - 20
    frame["yhat_upper"] = frame["yhat"] + 20
    frame["scale"] = np.where(frame["server_id"] == "a", 4.0, 0.0)
    out = score(frame, ["server_id", "metric", "model"]).set_index("server_id")
    for sid, group in frame.groupby("server_id"):
        row = out.loc[sid]
        assert row["mae"] == pytest.approx(mae(group["y"], group["yhat"]))
        assert row["rmse"] == pytest.approx(rmse(group["y"], group["yhat"]))
        assert row["mape"] == pytest.approx(mape(group["y"], group["yhat"]))
        assert row["smape"] == pytest.approx(smape(group["y"], group["yhat"]))
        assert row["coverage"] == pytest.approx(coverage(group["y"], group["yhat_lower"], group["yhat_upper"]))
        assert row["n_points"] == group["y"].notna().sum()
    assert out.loc["a", "mase"] == pytest.approx(out.loc["a", "mae"] / 4.0)
    assert np.isnan(out.loc["b", "mase"])  # zero scale: MASE undefined


def test_seasonal_scale_uses_only_history_up_to_each_cutoff() -> None:
    ds = pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(30), "D")
    values = np.arange(30, dtype=float)
    values[20:] = 100.0  # a jump after day 19 must not affect a cutoff at day 15
    values[10] = np.nan
    history = pd.DataFrame({"server_id": "a", "metric": "cpu", "ds": ds, "value": values})
    cutoffs = pd.DataFrame({"server_id": ["a", "a", "a"], "metric": "cpu", "cutoff": ds[[15, 29, 3]]})
    scale = seasonal_scale(history, 7, cutoffs)
    # Up to day 15: pairs (7..15, minus those touching day 10) all differ by 7.
    assert scale.iloc[0] == pytest.approx(7.0)
    later = np.abs(values[7:30] - values[0:23])
    assert scale.iloc[1] == pytest.approx(np.nanmean(later))
    assert np.isnan(scale.iloc[2])  # no pair yet
