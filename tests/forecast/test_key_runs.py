"""Run-wise lookups and groups give exactly what the pandas joins and groupbys they replace give."""

from __future__ import annotations

import numpy as np
import pandas as pd

from capacity_forecaster.forecast.backtest import attach_actuals
from capacity_forecaster.forecast.intervals import conformal_quantile
from capacity_forecaster.forecast.metrics import score
from capacity_forecaster.forecast.models.panel import rolling_median
from capacity_forecaster.forecast.runs import lookup, series_spans, sorted_groups

START = pd.Timestamp("2025-01-01")


def runs_frame(seed: int = 0) -> pd.DataFrame:
    """Rows in runs of (server_id, metric, cutoff), runs in no particular order, some keys repeated."""
    rng = np.random.default_rng(seed)
    parts = []
    for _ in range(12):
        server, metric = f"s{rng.integers(4)}", ["cpu", "memory"][rng.integers(2)]
        cutoff = START + pd.Timedelta(days=int(rng.integers(3)) * 10)
        n = int(rng.integers(1, 8))
        parts.append(pd.DataFrame({"server_id": server, "metric": metric, "cutoff": cutoff,
                                   "ds": cutoff + pd.to_timedelta(np.arange(1, n + 1), "D"),
                                   "yhat": rng.normal(50, 10, n)}))
    return pd.concat(parts, ignore_index=True)


def test_lookup_pairs_the_rows_a_merge_pairs() -> None:
    frame = runs_frame()
    table = frame[["server_id", "metric", "cutoff"]].drop_duplicates().iloc[::2].reset_index(drop=True)
    table["window"] = np.arange(len(table))
    at = lookup(frame, table, ["server_id", "metric", "cutoff"])
    want = frame.merge(table, on=["server_id", "metric", "cutoff"], how="left")["window"]
    got = np.where(at >= 0, table["window"].to_numpy()[np.maximum(at, 0)], -1)
    assert (got == want.fillna(-1).to_numpy()).all()
    assert len(lookup(frame.iloc[0:0], table, ["server_id"])) == 0


def test_attach_actuals_equals_the_left_join_and_falls_back_off_grid() -> None:
    history = pd.DataFrame({"server_id": np.repeat(["s0", "s1", "s2", "s3"], 20), "metric": "cpu",
                            "ds": np.tile(START + pd.to_timedelta(np.arange(20), "D"), 4),
                            "value": np.arange(80, dtype=float)})
    history.loc[5, "value"] = np.nan
    preds = runs_frame()
    preds = preds[preds["metric"] == "cpu"].reset_index(drop=True)
    want = preds.merge(history.rename(columns={"value": "y"}), on=["server_id", "metric", "ds"], how="left")
    got = attach_actuals(preds, history, "D")
    pd.testing.assert_frame_equal(got.drop(columns="step"), want, check_exact=True)
    shuffled = history.sample(frac=1.0, random_state=0)
    assert series_spans(shuffled, np.timedelta64(1, "D")) is None
    pd.testing.assert_frame_equal(attach_actuals(preds, shuffled, "D"), got, check_exact=True)


def test_sorted_groups_number_groups_as_a_sorted_groupby() -> None:
    frame = runs_frame(1)
    keys = ["server_id", "metric", "cutoff"]
    codes, first = sorted_groups(frame, keys)  # type: ignore[misc]
    want = frame.groupby(keys, sort=True).ngroup().to_numpy()
    assert (codes == want).all()
    pd.testing.assert_frame_equal(frame[keys].iloc[first].reset_index(drop=True),
                                  frame.groupby(keys, sort=True).size().reset_index()[keys])
    assert sorted_groups(frame.assign(metric=frame["metric"].where(frame.index != 3)), keys) is None


def test_score_over_runs_equals_the_plain_groupby() -> None:
    frame = runs_frame(2).assign(model="m", y=lambda f: f["yhat"] + 1.0, yhat_lower=0.0, yhat_upper=100.0, scale=2.0)
    keys = ["server_id", "metric", "model", "cutoff"]
    got = score(frame, keys)
    want = score(frame.assign(metric=frame["metric"].astype("category")), keys)
    want["metric"] = want["metric"].astype(object)
    pd.testing.assert_frame_equal(got, want, check_exact=True)


def test_conformal_quantile_picks_the_ranked_error() -> None:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"g": rng.integers(0, 30, 2_000), "e": np.round(rng.exponential(2.0, 2_000), 2)})
    got = conformal_quantile(frame, ["g"], "e", 0.8).set_index("g")["q"]
    for g, errors in frame.groupby("g")["e"]:
        k = min(int(np.ceil((len(errors) + 1) * 0.8)) - 1, len(errors) - 1)
        assert got[g] == np.sort(errors.to_numpy())[k]


def test_rolling_median_equals_pandas() -> None:
    rng = np.random.default_rng(4)
    values = np.round(rng.normal(50, 20, (9, 300)), 1)
    values[rng.random(values.shape) < 0.3] = np.nan
    values[2, :200] = np.nan
    for window in (1, 2, 7, 40):
        want = pd.DataFrame(values.T).rolling(window, min_periods=max(1, window // 2)).median().to_numpy().T
        np.testing.assert_array_equal(rolling_median(values, window, max(1, window // 2)), want)
