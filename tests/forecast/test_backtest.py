"""Rolling-origin backtests: grid preparation, cutoff plan, triage and, above all, no leakage past a cutoff."""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from capacity_forecaster.config import ForecastConfig
from capacity_forecaster.errors import SchemaError
from capacity_forecaster.forecast import registry
from capacity_forecaster.forecast.backtest import (
    design,
    history_until,
    plan_cutoffs,
    prepare_history,
    published_paths,
    series_index,
    triage,
)
from capacity_forecaster.forecast.stage import run_forecast
from capacity_forecaster.schema import BACKTEST_FORECAST_COLUMNS

START = pd.Timestamp("2024-03-01")


class Recorder:
    """Records, per fit, the last ``ds`` it was shown for each series; forecasts the last value."""

    name: ClassVar[str] = "recorder"
    kind: ClassVar[Literal["local", "global"]] = "local"
    min_history: ClassVar[int] = 1
    seen: ClassVar[list[dict[tuple[str, str], pd.Timestamp]]] = []

    def fit(self, history: pd.DataFrame, *, freq: str = "D") -> Recorder:
        last = history.groupby(["server_id", "metric"])["ds"].max()
        Recorder.seen.append({k: v for k, v in last.items()})
        self._last = last
        self._value = history.dropna().groupby(["server_id", "metric"])["value"].last()
        return self

    def predict(self, horizon: int, *, level: float = 80.0) -> pd.DataFrame:
        steps = pd.to_timedelta(np.arange(1, horizon + 1), "D")
        return pd.concat([pd.DataFrame({"server_id": s, "metric": m, "ds": last + steps, "yhat": self._value[(s, m)]})
                          for (s, m), last in self._last.items()], ignore_index=True)


class GlobalRecorder(Recorder):
    """The same, as a global model (one fit over every series of a metric at a cutoff)."""

    name: ClassVar[str] = "global_recorder"
    kind: ClassVar[Literal["local", "global"]] = "global"


@pytest.fixture(autouse=True)
def recorder_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_REGISTRY", {"recorder": Recorder, "global_recorder": GlobalRecorder})
    monkeypatch.setattr(registry, "MODEL_MODULES", ())


def series(server: str, days: int, offset: int = 0, metric: str = "cpu") -> pd.DataFrame:
    t = np.arange(days)
    return pd.DataFrame({"server_id": server, "metric": metric, "ds": START + pd.to_timedelta(t + offset, "D"),
                         "value": 40 + 10 * np.sin(t / 3.0)})


def test_prepare_history_fills_the_grid_and_names_duplicates() -> None:
    data = series("a", 10).drop(index=[3, 4])
    data["ds"] = data["ds"] + pd.Timedelta(hours=5)  # daily data stamped mid-day
    out = prepare_history(data, "D")
    assert len(out) == 10 and out["value"].isna().sum() == 2
    assert (out["ds"] == START + pd.to_timedelta(np.arange(10), "D")).all()
    assert list(out.columns) == ["server_id", "metric", "ds", "value"]
    with pytest.raises(SchemaError, match=r"series \(a, cpu\) has 1 duplicate"):
        prepare_history(pd.concat([series("a", 5), series("a", 5).iloc[[2]]]), "D")


def test_cutoffs_anchor_on_each_series_end_and_need_training_data() -> None:
    history = prepare_history(pd.concat([series("a", 100), series("b", 60, offset=10)]), "D")
    index = series_index(history)
    plan = plan_cutoffs(history, index, horizon=10, windows=3, step=5, freq="D")
    a = plan[plan["server_id"] == "a"]
    assert a["cutoff"].tolist() == [START + pd.Timedelta(days=d) for d in (79, 84, 89)]
    assert a["window"].tolist() == [0, 1, 2] and a["n_train"].tolist() == [80, 85, 90]
    assert (a["horizon"] == 10).all()
    b = plan[plan["server_id"] == "b"]  # days 10..69: cutoffs at days 49, 54, 59 with 40, 45, 50 days known
    assert b["window"].tolist() == [0, 1, 2] and b["n_train"].tolist() == [40, 45, 50]
    assert plan_cutoffs(history, index, horizon=10, windows=0, step=5, freq="D").empty


def test_short_histories_get_a_design_of_their_own() -> None:
    """Two months and h = 30: three windows scoring 15-day leads; three weeks and h = 7: one window."""
    history = prepare_history(pd.concat([series("two_months", 62), series("three_weeks", 23),
                                         series("ten_days", 10), series("three_years", 1095)]), "D")
    index = series_index(history)
    plan = plan_cutoffs(history, index, horizon=30, windows=3, step=15, freq="D").set_index(["server_id", "window"])
    two = plan.loc["two_months"]
    last = START + pd.Timedelta(days=61)
    assert two["cutoff"].tolist() == [last - pd.Timedelta(days=d) for d in (29, 22, 15)]
    assert (two["horizon"] == 15).all() and two["n_train"].min() >= 28
    assert "ten_days" not in plan.index.get_level_values(0)
    long = plan.loc["three_years"]
    assert (long["horizon"] == 30).all() and len(long) == 3  # the fixed design: full horizon, step 15
    week = plan_cutoffs(history, index, horizon=7, windows=3, step=3, freq="D").set_index("server_id")
    assert week.loc[["three_weeks"], "horizon"].tolist() == [7] and week.loc["three_weeks", "n_train"] == 16
    d = design(index, horizon=30, windows=3, step=15, freq="D").set_index("server_id")
    assert d.loc["ten_days", "bt_windows"] == 0 and d.loc["two_months", "bt_step"] == 7


@settings(max_examples=60, deadline=None)
@given(length=st.integers(1, 400), horizon=st.integers(1, 200), windows=st.integers(1, 5))
def test_every_window_fits_inside_its_series(length: int, horizon: int, windows: int) -> None:
    history = prepare_history(series("s", length), "D")
    index = series_index(history)
    plan = plan_cutoffs(history, index, horizon=horizon, windows=windows, step=max(1, horizon // 2), freq="D")
    last = START + pd.Timedelta(days=length - 1)
    assert len(plan) <= windows
    assert ((plan["cutoff"] + pd.to_timedelta(plan["horizon"], "D")) <= last).all()
    assert (plan["n_train"] >= 7).all() and (plan["horizon"] <= horizon).all()
    assert plan["cutoff"].is_monotonic_increasing


def test_triage_reasons() -> None:
    data = pd.concat([series("ok", 800), series("young", 500), series("two_months", 61), series("short", 20),
                      series("flat", 100), series("gone", 100)])
    data.loc[data["server_id"] == "flat", "value"] = 7.0
    data.loc[data["server_id"] == "gone", "value"] = np.nan
    tri = triage(series_index(prepare_history(data, "D")), 56, "D").set_index("server_id")
    assert tri.loc["ok", "status"] == "model" and tri.loc["ok", "reason"] == ""
    assert tri.loc["young", "status"] == "model" and "under two years" in tri.loc["young", "reason"]
    # Two months cannot show a yearly pattern: the reason says so, not that models "decide" on one.
    two_months = tri.loc["two_months", "reason"]
    assert tri.loc["two_months", "status"] == "model" and "under two years" not in two_months
    assert two_months.startswith("61 days of history (under a year)") and "yearly" in two_months
    assert tri.loc["short", "status"] == "baseline" and "20 days known, 56 needed" in tri.loc["short", "reason"]
    assert tri.loc["flat", "status"] == "baseline" and "constant at 7" in tri.loc["flat", "reason"]
    assert tri.loc["gone", "status"] == "skip"


@settings(max_examples=40, deadline=None)
@given(lengths=st.lists(st.integers(1, 40), min_size=1, max_size=5), offsets=st.data(), cut=st.integers(-5, 50))
def test_history_until_keeps_exactly_the_rows_up_to_the_cutoff(lengths: list[int], offsets: st.DataObject,
                                                             cut: int) -> None:
    frames = [series(f"s{i}", n, offset=offsets.draw(st.integers(0, 10))) for i, n in enumerate(lengths)]
    history = prepare_history(pd.concat(frames), "D")
    index = series_index(history)
    cutoff = START + pd.Timedelta(days=cut)
    got = history_until(history, index, cutoff, "D")
    want = history[history["ds"] <= cutoff].reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want)
    some = index.iloc[::2]
    got_some = history_until(history, some, cutoff, "D")
    assert set(got_some["server_id"]) <= set(some["server_id"]) and (got_some["ds"] <= cutoff).all()


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(horizon=st.integers(1, 12), windows=st.integers(1, 4), step=st.integers(1, 9),
       lengths=st.lists(st.tuples(st.integers(60, 110), st.integers(0, 15)), min_size=1, max_size=3))
def test_no_fit_ever_sees_data_after_its_cutoff(horizon: int, windows: int, step: int,
                                                 lengths: list[tuple[int, int]]) -> None:
    data = pd.concat([series(f"s{i}", n, offset=o) for i, (n, o) in enumerate(lengths)])
    Recorder.seen.clear()
    cfg = ForecastConfig(horizon=horizon, backtest_windows=windows, backtest_step=step,
                         models="recorder,global_recorder",
                         n_jobs=1, min_history_days=30, batch_size=2)
    result = run_forecast(data, cfg)
    last = data.groupby(["server_id", "metric"])["ds"].max()
    backtest_fits = [fit for fit in Recorder.seen if any(ds < last[k] for k, ds in fit.items())]
    seen = {(k, ds) for fit in backtest_fits for k, ds in fit.items()}
    rows = result.backtests[result.backtests["model"].isin(["recorder", "global_recorder"])]
    expected = {((s, m), c) for s, m, c in rows[["server_id", "metric", "cutoff"]].itertuples(index=False)}
    # Every backtest fit saw its series exactly up to the cutoff it is scored at, never beyond.
    assert seen == expected
    for fit in backtest_fits:
        assert len(set(fit.values())) == 1  # one calendar cutoff per unit, global models included
    for _, row in rows.iterrows():
        assert row["cutoff"] + pd.Timedelta(days=horizon) <= last[(row["server_id"], row["metric"])]


def noisy(server: str, days: int, seed: int) -> pd.DataFrame:
    frame = series(server, days)
    frame["value"] += np.random.default_rng(seed).normal(0, 2, days)
    return frame


def test_backtest_forecasts_keep_the_published_path_with_intervals_from_the_other_windows() -> None:
    horizon = 20
    data = pd.concat([noisy(f"s{i}", 200, seed=i) for i in range(4)], ignore_index=True)
    cfg = ForecastConfig(horizon=horizon, backtest_windows=3, backtest_step=horizon, models="recorder", n_jobs=1,
                         min_history_days=30)
    result = run_forecast(data, cfg)
    paths = result.backtest_forecasts
    assert list(paths.columns) == list(BACKTEST_FORECAST_COLUMNS) and len(paths) == 4 * 3 * horizon
    assert set(paths["model"]) == {"recorder"} == set(result.forecasts["model"])
    assert paths.groupby("server_id")["cutoff"].nunique().eq(3).all()
    actual = paths.merge(data, on=["server_id", "metric", "ds"])
    np.testing.assert_allclose(actual["y"], actual["value"])
    assert ((paths["yhat_lower"] <= paths["yhat"]) & (paths["yhat"] <= paths["yhat_upper"])).all()
    assert result.summary["backtest_forecast_rows"] == len(paths)

    # The newest window's actuals (the last `horizon` days) are seen by no backtest fit: changing them may
    # change only that window's y, never its forecast or interval; the older windows' intervals, which
    # are calibrated on the newest window's errors, do change.
    newest_days = (data["ds"] > data["ds"].max() - pd.Timedelta(days=horizon)).to_numpy()
    shaken = data.copy()
    shaken.loc[newest_days, "value"] += 15 + np.random.default_rng(0).normal(0, 5, int(newest_days.sum()))
    other = run_forecast(shaken, cfg).backtest_forecasts
    newest = (paths["cutoff"] == paths["cutoff"].max()).to_numpy()
    pd.testing.assert_frame_equal(paths.loc[newest].drop(columns="y"), other.loc[newest].drop(columns="y"))
    assert (other.loc[newest, "y"] > paths.loc[newest, "y"] + 5).mean() > 0.8
    assert (other.loc[~newest, "yhat_upper"] > paths.loc[~newest, "yhat_upper"] + 1).mean() > 0.5


def test_published_paths_need_two_windows() -> None:
    points = pd.DataFrame({"server_id": "a", "metric": "cpu", "model": ["m", "n"], "window": 0,
                           "cutoff": START, "ds": START + pd.Timedelta(days=1), "y": 1.0, "yhat": 1.0,
                           "yhat_lower": 0.0, "yhat_upper": 2.0})
    published = pd.DataFrame({"server_id": ["a"], "metric": ["cpu"], "model": ["m"]})
    assert published_paths(points, published).empty  # self-calibrated bounds: not returned
    two = pd.concat([points, points.assign(window=1, cutoff=START + pd.Timedelta(days=1))], ignore_index=True)
    out = published_paths(two, published)
    assert list(out.columns) == list(BACKTEST_FORECAST_COLUMNS) and set(out["model"]) == {"m"} and len(out) == 2
