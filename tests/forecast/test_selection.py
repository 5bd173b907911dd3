"""Selection: eligibility, tie-breaks, top-k members and the ensemble's leave-one-window-out backtest."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from capacity_forecaster.forecast.selection import (
    ENSEMBLE,
    choose,
    combine,
    ensemble_backtest,
    metric_defaults,
    rank_models,
    series_margin,
    top_members,
)

ORDER = ["seasonal_naive", "a", "b", "c", ENSEMBLE]


def scores(rows: list[tuple[str, str, int, float, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["server_id", "model", "window", "mae", "rmse"]).assign(metric="cpu")


PLANNED = pd.DataFrame({"server_id": ["s1", "s2"], "metric": "cpu", "n_windows": [2, 2]})


def test_rank_by_mae_then_rmse_then_declared_order() -> None:
    table = scores([
        ("s1", "a", 0, 2.0, 3.0), ("s1", "a", 1, 2.0, 3.0),
        ("s1", "b", 0, 2.0, 2.5), ("s1", "b", 1, 2.0, 2.5),  # same MAE as a, lower RMSE
        ("s1", "c", 0, 1.0, 1.0),  # best, but one window missing: not eligible
        ("s2", "b", 0, 1.0, 1.0), ("s2", "b", 1, 1.0, 1.0),
        ("s2", "seasonal_naive", 0, 1.0, 1.0), ("s2", "seasonal_naive", 1, 1.0, 1.0),  # exact tie: baseline first
    ])
    ranked = rank_models(table, PLANNED, ORDER)
    assert ranked[ranked["server_id"] == "s1"]["model"].tolist() == ["b", "a"]
    assert choose(ranked, ORDER).set_index("server_id")["model"].to_dict() == {"s1": "b", "s2": "seasonal_naive"}


def test_series_leave_the_metric_default_only_when_clearly_beaten() -> None:
    table = scores([
        ("s1", "a", 0, 2.0, 2.0), ("s1", "b", 0, 1.9, 1.9),  # b 5 % better: not enough
        ("s2", "a", 0, 1.0, 1.0), ("s2", "b", 0, 0.5, 0.5),  # b 50 % better: switch
        ("s3", "a", 0, 1.0, 1.0), ("s3", "b", 0, 3.0, 3.0),
        ("s4", "b", 0, 4.0, 4.0),  # the default (a) is not eligible here: best eligible
    ])
    planned = pd.DataFrame({"server_id": ["s1", "s2", "s3", "s4"], "metric": "cpu", "n_windows": 1})
    ranked = rank_models(table, planned, ORDER)
    assert metric_defaults(ranked, ORDER)[["metric", "model"]].values.tolist() == [["cpu", "a"]]
    picked = choose(ranked, ORDER, margin=0.15).set_index("server_id")["model"].to_dict()
    assert picked == {"s1": "a", "s2": "b", "s3": "a", "s4": "b"}
    plain = choose(ranked, ORDER, margin=0.0).set_index("server_id")["model"].to_dict()
    assert plain == {"s1": "b", "s2": "b", "s3": "a", "s4": "b"}


def test_top_members_need_two_models() -> None:
    ranked = pd.DataFrame({"server_id": ["s1", "s1", "s1", "s2"], "metric": "cpu", "model": ["b", "a", "c", "a"],
                           "rank": [0, 1, 2, 0]})
    members = top_members(ranked, 2)
    assert members["model"].tolist() == ["b", "a"] and set(members["server_id"]) == {"s1"}


def _predictions() -> pd.DataFrame:
    ds = pd.Timestamp("2025-01-01") + pd.to_timedelta(np.arange(4), "D")
    frames = []
    for w in (0, 1, 2):
        for model, level in (("a", 10.0), ("b", 20.0), ("c", 40.0)):
            shift = pd.Timedelta(days=10 * w)
            frames.append(pd.DataFrame({"server_id": "s1", "metric": "cpu", "model": model, "window": w,
                                        "cutoff": ds[0] + shift, "ds": ds + shift, "yhat": level + w,
                                        "yhat_lower": level + w - 1, "yhat_upper": level + w + 1}))
    return pd.concat(frames, ignore_index=True)


def test_ensemble_members_are_chosen_on_the_other_windows() -> None:
    # a is best on windows 0 and 1, c is best on window 2; b is second everywhere.
    table = scores([
        ("s1", "a", 0, 1.0, 1.0), ("s1", "a", 1, 1.0, 1.0), ("s1", "a", 2, 9.0, 9.0),
        ("s1", "b", 0, 2.0, 2.0), ("s1", "b", 1, 2.0, 2.0), ("s1", "b", 2, 2.0, 2.0),
        ("s1", "c", 0, 9.0, 9.0), ("s1", "c", 1, 9.0, 9.0), ("s1", "c", 2, 1.0, 1.0),
    ])
    planned = pd.DataFrame({"server_id": ["s1"], "metric": "cpu", "n_windows": [3]})
    ens = ensemble_backtest(_predictions(), table, planned, ORDER, k=2)
    by_window = ens.groupby("window")["yhat"].first()
    # Window 0 is judged on windows 1-2: b (2.0) and a (5.0) -> mean(10, 20) = 15.
    assert by_window[0] == pytest.approx(15.0)
    # Window 2 on windows 0-1: a and b -> mean(12, 22) = 17, although c is best on window 2 itself.
    assert by_window[2] == pytest.approx(17.0)
    assert (ens["model"] == ENSEMBLE).all() and len(ens) == 12
    assert list(ens.columns) == list(_predictions().columns)


def test_single_window_ranks_on_itself_and_combine_needs_every_member() -> None:
    table = scores([("s1", "a", 0, 1.0, 1.0), ("s1", "b", 0, 2.0, 2.0), ("s1", "c", 0, 3.0, 3.0)])
    planned = pd.DataFrame({"server_id": ["s1"], "metric": "cpu", "n_windows": [1]})
    preds = _predictions()
    ens = ensemble_backtest(preds[preds["window"] == 0], table, planned, ORDER, k=2)
    assert ens["yhat"].tolist() == [15.0] * 4
    final = preds[preds["window"] == 0].drop(columns=["window", "cutoff"])
    members = pd.DataFrame({"server_id": ["s1", "s1"], "metric": "cpu", "model": ["a", "c"]})
    assert combine(final, members)["yhat"].tolist() == [25.0] * 4
    missing = combine(final[final["model"] != "c"], members)
    assert missing.empty  # a member without a forecast: no ensemble (the engine falls back)


def test_series_scored_on_few_points_need_a_larger_gain_to_leave_the_default() -> None:
    """20 % better on 540 points switches; on 45 points (two months, 15-day leads) it is not evidence enough."""
    rows = []
    for server, points in (("long", 540), ("short", 45), ("tiny", 7)):
        rows += [(server, "a", 0, 1.0, 1.0, points), (server, "b", 0, 0.8, 0.8, points)]
    rows += [("other", "a", 0, 1.0, 1.0, 540), ("other", "b", 0, 2.0, 2.0, 540)]  # makes a the default
    table = pd.DataFrame(rows, columns=["server_id", "model", "window", "mae", "rmse", "n_points"]).assign(metric="cpu")
    planned = pd.DataFrame({"server_id": ["long", "short", "tiny", "other"], "metric": "cpu", "n_windows": 1})
    ranked = rank_models(table, planned, ORDER)
    picked = choose(ranked, ORDER, margin=0.15).set_index("server_id")["model"].to_dict()
    assert picked == {"long": "b", "short": "a", "tiny": "a", "other": "a"}
    per_series = ranked.drop_duplicates("server_id").set_index("server_id").loc[["long", "short", "tiny"]]
    margins = series_margin(per_series, 0.15)
    assert margins[0] == 0.15 and 0.35 < margins[1] < 0.4 and margins[2] == 0.9
