"""The forecast engine against toy models with exact numbers: backtests, selection, fallbacks, triage."""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
import pandas as pd
import pytest

from capacity_forecaster.config import ForecastConfig
from capacity_forecaster.errors import ForecastError
from capacity_forecaster.forecast import registry
from capacity_forecaster.forecast.engine import BASELINE, BuiltinSeasonalNaive, UnitTask, check_predictions, run_unit
from capacity_forecaster.forecast.stage import FAILURE_COLUMNS, PHASES, resolve_models, run_forecast
from capacity_forecaster.schema import BACKTEST_COLUMNS, FORECAST_COLUMNS

START = pd.Timestamp("2024-01-01")


class _Flat:
    """Forecast a flat line at ``level(values)`` per series, interval +-1."""

    kind: ClassVar[Literal["local", "global"]] = "local"
    min_history: ClassVar[int] = 1
    offset: ClassVar[float] = 0.0

    def level(self, values: np.ndarray) -> float:
        raise NotImplementedError

    def fit(self, history: pd.DataFrame, *, freq: str = "D") -> _Flat:
        self._freq = freq
        self._rows = [(s, m, g["ds"].max(), self.level(g["value"].dropna().to_numpy()) + self.offset)
                      for (s, m), g in history.groupby(["server_id", "metric"], sort=True)]
        return self

    def predict(self, horizon: int, *, level: float = 80.0) -> pd.DataFrame:
        step = pd.Timedelta(1, "D" if self._freq == "D" else "h")
        frames = [pd.DataFrame({"server_id": s, "metric": m, "ds": last + step * np.arange(1, horizon + 1),
                                "yhat": v, "yhat_lower": v - 1, "yhat_upper": v + 1})
                  for s, m, last, v in self._rows]
        return pd.concat(frames, ignore_index=True)


class ToyLast(_Flat):
    name: ClassVar[str] = "toy_last"

    def level(self, values: np.ndarray) -> float:
        return float(values[-1])


class ToyMean(_Flat):
    name: ClassVar[str] = "toy_mean"

    def level(self, values: np.ndarray) -> float:
        return float(values.mean())


class ToyPlus(ToyLast):
    name: ClassVar[str] = "toy_plus"
    offset: ClassVar[float] = 3.0


class ToyMinus(ToyLast):
    name: ClassVar[str] = "toy_minus"
    offset: ClassVar[float] = -3.0


class ToyTwin(ToyLast):
    name: ClassVar[str] = "toy_twin"


class ToyBroken(ToyLast):
    name: ClassVar[str] = "toy_broken"

    def fit(self, history: pd.DataFrame, *, freq: str = "D") -> ToyBroken:
        raise ValueError("boom")


class ToyFailsFinal(ToyLast):
    """Good in backtests (a perfect oracle of nothing: last value), fails on the full history."""

    name: ClassVar[str] = "toy_fails_final"
    fail_after: ClassVar[pd.Timestamp] = START + pd.Timedelta(days=95)

    def fit(self, history: pd.DataFrame, *, freq: str = "D") -> ToyFailsFinal:
        if history["ds"].max() > self.fail_after:
            raise RuntimeError("cannot fit the final history")
        return super().fit(history, freq=freq)


class ToyGlobal(ToyMean):
    """Global: one mean over every series it is given (records batch sizes)."""

    name: ClassVar[str] = "toy_global"
    kind: ClassVar[Literal["local", "global"]] = "global"
    batches: ClassVar[list[int]] = []

    def fit(self, history: pd.DataFrame, *, freq: str = "D") -> ToyGlobal:
        ToyGlobal.batches.append(history.groupby(["server_id", "metric"]).ngroups)
        super().fit(history, freq=freq)
        mean = float(history["value"].mean())
        self._rows = [(s, m, last, mean) for s, m, last, _ in self._rows]
        return self


TOYS = {cls.name: cls for cls in (ToyLast, ToyTwin, ToyMean, ToyPlus, ToyMinus, ToyBroken, ToyFailsFinal, ToyGlobal)}


@pytest.fixture(autouse=True)
def toy_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the toys are registered (no real models, the engine's built-in baseline)."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(TOYS))
    monkeypatch.setattr(registry, "MODEL_MODULES", ())


def linear(servers: tuple[str, ...] = ("s1",), days: int = 100, metric: str = "cpu") -> pd.DataFrame:
    """value = day index (0, 1, 2, ...) for every server."""
    return pd.concat([pd.DataFrame({"server_id": s, "ds": START + pd.to_timedelta(np.arange(days), "D"),
                                    "metric": metric, "value": np.arange(days, dtype=float),
                                    "is_imputed": False}) for s in servers], ignore_index=True)


def cfg(**kw: object) -> ForecastConfig:
    base: dict[str, object] = {"horizon": 10, "backtest_windows": 2, "backtest_step": 10, "n_jobs": 1}
    return ForecastConfig(**{**base, **kw})


def test_exact_backtest_numbers_and_selection() -> None:
    result = run_forecast(linear(), cfg(models="toy_last,toy_mean,seasonal_naive"))
    bt = result.backtests.set_index(["model", "cutoff"])
    cut0, cut1 = START + pd.Timedelta(days=79), START + pd.Timedelta(days=89)
    # toy_last at day 79 predicts 79 for days 80..89: errors 1..10.
    assert bt.loc[("toy_last", cut0), "mae"] == pytest.approx(5.5)
    assert bt.loc[("toy_last", cut1), "mae"] == pytest.approx(5.5)
    assert bt.loc[("toy_last", cut0), "rmse"] == pytest.approx(np.sqrt(np.mean(np.arange(1, 11) ** 2)))
    assert bt.loc[("toy_last", cut0), "mase"] == pytest.approx(5.5 / 7.0)  # weekly differences are all 7
    assert bt.loc[("toy_mean", cut0), "mae"] == pytest.approx(45.0)  # mean(0..79) = 39.5 vs 80..89
    # Seasonal naive repeats 73..79: errors 7 for the first week, 14 after.
    assert bt.loc[(BASELINE, cut0), "mae"] == pytest.approx(9.1)
    assert bt.loc[("toy_last", cut0), "n_points"] == 10
    assert bt.loc[("toy_last", cut0), "coverage"] == pytest.approx(0.1)  # own +-1 bounds: only day 80 inside
    assert set(bt.index.get_level_values("cutoff")) == {cut0, cut1}
    assert bt.loc[bt["selected"]].index.get_level_values("model").unique().tolist() == ["toy_last"]
    fc = result.forecasts
    assert list(fc.columns) == [*FORECAST_COLUMNS, "is_extrapolation"] and not fc["is_extrapolation"].any()
    assert (fc["model"] == "toy_last").all() and (fc["yhat"] == 99.0).all()
    assert fc["ds"].tolist() == list(START + pd.to_timedelta(np.arange(100, 110), "D"))
    assert list(result.backtests.columns[: len(BACKTEST_COLUMNS)]) == list(BACKTEST_COLUMNS)
    assert result.summary["chosen"] == {"toy_last": 1}
    assert result.failures.empty and list(result.failures.columns) == list(FAILURE_COLUMNS)


def test_ensemble_is_selected_only_when_it_earns_it() -> None:
    data = linear(days=100)
    data["value"] = 50.0 + (np.arange(100) % 2)
    result = run_forecast(data, cfg(models="toy_plus,toy_minus,ensemble", ensemble_size=2))
    chosen = result.backtests.loc[result.backtests["selected"], "model"].unique().tolist()
    assert chosen == ["ensemble"]
    assert result.forecasts["yhat"].tolist() == [51.0] * 10  # mean of last+3 and last-3
    ens = result.backtests[result.backtests["model"] == "ensemble"]
    assert ens["mae"].tolist() == pytest.approx([0.5, 0.5])
    # Not earned: with toy_last in the set the ensemble of its best two is worse than toy_last alone.
    other = run_forecast(linear(), cfg(models="toy_last,seasonal_naive,ensemble", ensemble_size=2))
    assert other.forecasts["model"].unique().tolist() == ["toy_last"]
    assert other.backtests.set_index("model").loc["ensemble", "mae"].tolist() == pytest.approx([7.3, 7.3])


def test_ties_go_to_lower_rmse_then_declared_order() -> None:
    data = linear(days=100)
    data["value"] = np.where(np.arange(100) % 7 == 0, 20.0, 10.0)
    exact = run_forecast(data, cfg(models="toy_last,seasonal_naive"))
    assert exact.forecasts["model"].unique().tolist() == [BASELINE]  # weekly pattern: naive is exact
    data["value"] = 30.0 + np.arange(100) % 2
    # Both MAE 0.5; toy_mean's errors are all 0.5 (RMSE 0.5), toy_last's 0 or 1 (RMSE 0.71).
    rmse = run_forecast(data, cfg(models="toy_last,toy_mean"))
    assert rmse.forecasts["model"].unique().tolist() == ["toy_mean"]
    for order in (["toy_twin", "toy_last"], ["toy_last", "toy_twin"]):
        twin = run_forecast(data, cfg(models=",".join(order)))
        assert twin.forecasts["model"].unique().tolist() == [order[0]]


def test_failed_backtest_unit_is_recorded_and_model_excluded() -> None:
    result = run_forecast(linear(("a", "b")), cfg(models="toy_broken,toy_mean"))
    fails = result.failures
    assert set(fails["stage"]) == {"backtest"}
    assert set(fails["server_id"]) == {"a", "b"} and len(fails) == 4  # 2 series x 2 cutoffs
    assert fails["error"].str.contains("ValueError: boom").all()
    assert (fails["fallback"] == "toy_mean").all()
    assert (result.forecasts["model"] == "toy_mean").all()
    assert "toy_broken" not in set(result.backtests["model"])
    assert result.summary["failure_reasons"] == {"toy_broken (backtest): toy_broken: ValueError: boom": 4}


def test_only_model_failing_falls_back_to_baseline() -> None:
    result = run_forecast(linear(), cfg(models="toy_broken"))
    assert (result.forecasts["model"] == BASELINE).all()
    assert (result.failures["fallback"] == BASELINE).all()
    assert "no model has a complete backtest" in result.triage.loc[0, "reason"]


def test_final_fit_failure_falls_back_to_baseline_for_that_batch() -> None:
    result = run_forecast(linear(("a", "b")), cfg(models="toy_fails_final,toy_mean", batch_size=1))
    final = result.failures[result.failures["stage"] == "final"]
    assert (final["model"] == "toy_fails_final").all()  # chosen by the backtest, failed on the full history
    assert len(final) == 2 and (final["fallback"] == BASELINE).all()
    assert final["error"].str.contains("RuntimeError: cannot fit the final history").all()
    assert (result.forecasts["model"] == BASELINE).all()
    assert set(result.backtests.loc[result.backtests["selected"], "model"]) == {BASELINE}  # what was published
    expected = np.resize(np.arange(93, 100, dtype=float), 10)  # the built-in weekly seasonal naive
    assert result.forecasts.loc[result.forecasts["server_id"] == "a", "yhat"].to_numpy() == pytest.approx(expected)


def test_run_unit_never_raises_and_checks_predictions() -> None:
    history = linear()[["server_id", "metric", "ds", "value"]]
    task = UnitTask(0, "toy_broken", "final", None, history, ToyBroken(), 5, "D", 0.8, (BuiltinSeasonalNaive(),))
    result = run_unit(task)
    assert result.used == BASELINE and result.errors == ("toy_broken: ValueError: boom",)
    assert len(result.predictions) == 5
    bare = run_unit(UnitTask(1, "toy_broken", "backtest", None, history, ToyBroken(), 5, "D", 0.8))
    assert bare.predictions is None and bare.series == (("s1", "cpu"),)
    with pytest.raises(ForecastError, match="expected 5 steps"):
        check_predictions(ToyLast().fit(history).predict(4), history, 5, "D")


def test_global_model_gets_every_series_of_a_metric_at_once() -> None:
    ToyGlobal.batches.clear()
    run_forecast(linear(("a", "b", "c")), cfg(models="toy_global", batch_size=1))
    assert ToyGlobal.batches == [3, 3, 3]  # two cutoffs + the final fit


def test_triage_skips_empty_flattens_constant_and_widens_short() -> None:
    data = linear(("long", "flat", "empty"))
    data.loc[data["server_id"] == "flat", "value"] = 42.0
    data.loc[data["server_id"] == "empty", "value"] = np.nan
    short = linear(("short",), days=10)
    result = run_forecast(pd.concat([data, short]), cfg(models="toy_last"))
    tri = result.triage.set_index("server_id")
    assert tri.loc["empty", "status"] == "skip" and "all values missing" in tri.loc["empty", "reason"]
    assert tri.loc["flat", "status"] == "baseline" and "constant" in tri.loc["flat", "reason"]
    assert tri.loc["short", "status"] == "baseline" and "short history: 10 days" in tri.loc["short", "reason"]
    assert tri.loc["long", "status"] == "model"
    fc = result.forecasts.set_index("server_id")
    assert "empty" not in fc.index
    assert (fc.loc["flat", "yhat"] == 42.0).all() and (fc.loc["flat", "model"] == BASELINE).all()
    assert (fc.loc["flat", "yhat_upper"] - fc.loc["flat", "yhat_lower"] == 0).all()  # zero backtest error
    short_fc = fc.loc["short"]
    assert (short_fc["model"] == BASELINE).all()
    assert (short_fc["yhat_upper"] - short_fc["yhat_lower"] > 0).all()
    assert short_fc["is_extrapolation"].all() and not fc.loc["long", "is_extrapolation"].any()
    assert result.summary["triage"] == {"baseline": 2, "model": 1, "skip": 1}


def test_two_months_of_history_still_choose_a_model_and_mark_extrapolation() -> None:
    """62 days, h = 30: backtests score 15-day leads, so toy_last (exact on a line) beats the baseline."""
    data = linear(("a", "b"), days=62)
    result = run_forecast(data, cfg(models="toy_last", horizon=30, backtest_windows=3,
                                    backtest_step=None))
    assert set(result.forecasts["model"]) == {"toy_last"}
    assert result.backtests.groupby("model")["cutoff"].nunique().to_dict() == {BASELINE: 3, "toy_last": 3}
    fc = result.forecasts[result.forecasts["server_id"] == "a"].reset_index(drop=True)
    assert fc["is_extrapolation"].tolist() == [False] * 15 + [True] * 15
    assert result.summary["extrapolated_series"] == 2


def test_a_longer_horizon_leaves_the_validated_days_intervals_alone() -> None:
    """Two months of noisy history score 15-day leads whatever the horizon: asking for 90 days instead
    of 30 must not change the first 30 days' intervals (the error buckets were sixths of the horizon,
    so at 90 days steps 1-15 shared one quantile and the widened extrapolation started from it)."""
    rng = np.random.default_rng(11)
    data = linear(("a", "b", "c", "d"), days=62)
    data["value"] = np.clip(40 + np.cumsum(rng.normal(0, 3, len(data))) % 30, 0, 100)
    short, long = (run_forecast(data, cfg(models="seasonal_naive", horizon=h, backtest_windows=3, backtest_step=None))
                   .forecasts for h in (30, 90))
    head = long.groupby("server_id").head(30).reset_index(drop=True)
    pd.testing.assert_frame_equal(short.reset_index(drop=True), head)
    assert (short["yhat_upper"] - short["yhat_lower"]).nunique() > 4


def test_hourly_series_work() -> None:
    hours = 24 * 7 * 10
    data = pd.DataFrame({"server_id": "h1", "metric": "memory",
                         "ds": pd.Timestamp("2025-03-01") + pd.to_timedelta(np.arange(hours), "h"),
                         "value": 40 + 10 * np.sin(np.arange(hours) * 2 * np.pi / 24)})
    result = run_forecast(data, cfg(freq="h", horizon=48, backtest_step=24, min_history_days=14,
                                    models="toy_last,seasonal_naive"))
    assert len(result.forecasts) == 48 and result.forecasts["model"].unique().tolist() == [BASELINE]
    assert result.forecasts["ds"].iloc[0] == data["ds"].iloc[-1] + pd.Timedelta(hours=1)
    assert result.backtests.loc[result.backtests["model"] == BASELINE, "mae"].max() == pytest.approx(0.0, abs=1e-9)


def test_contract_bounds_progress_and_determinism() -> None:
    rng = np.random.default_rng(3)
    data = linear(("a", "b", "c"), days=120)
    data["value"] = np.clip(50 + rng.normal(0, 20, len(data)), 0, 100)
    calls: list[tuple[str, int, int]] = []
    original = data.copy()
    config = cfg(models="toy_last,toy_mean,toy_broken,seasonal_naive,ensemble", horizon=14, backtest_windows=3,
                 backtest_step=7)
    first = run_forecast(data, config, progress=lambda phase, done, total: calls.append((phase, done, total)))
    second = run_forecast(data, config)
    pd.testing.assert_frame_equal(data, original)  # the input is never mutated
    pd.testing.assert_frame_equal(first.forecasts, second.forecasts)
    pd.testing.assert_frame_equal(first.backtests, second.backtests)
    fc = first.forecasts
    assert ((0 <= fc["yhat_lower"]) & (fc["yhat_lower"] <= fc["yhat"]) & (fc["yhat"] <= fc["yhat_upper"])
            & (fc["yhat_upper"] <= 100)).all()
    phases = list(dict.fromkeys(c[0] for c in calls))
    assert phases == [p for p in PHASES if p != "writing"]
    for phase in phases:  # each phase starts at 0, counts up by one to a total fixed in advance
        seen = [c for c in calls if c[0] == phase]
        assert [c[1] for c in seen] == list(range(len(seen))) and len({c[2] for c in seen}) == 1
        assert seen[-1][1] == seen[-1][2]
    fits = {c[0]: c[2] for c in calls if c[0] in ("backtests", "final fits")}
    assert fits["backtests"] == fits["final fits"] == first.summary["series"]  # counted in series
    assert first.summary["backtest_units"] + first.summary["final_units"] == first.summary["units"]
    assert first.summary["failures"] == 9  # toy_broken: 3 series x 3 cutoffs, recorded, never silent


def test_unknown_model_lists_valid_names() -> None:
    with pytest.raises(ForecastError, match="unknown model 'prophet'.*toy_last"):
        resolve_models("prophet,toy_last")
    assert resolve_models("auto")[0] == BASELINE and resolve_models("auto")[-1] == "ensemble"


def test_without_backtest_windows_forced_set_uses_its_first_model() -> None:
    forced = run_forecast(linear(), cfg(models="toy_last,toy_mean", backtest_windows=0))
    assert forced.backtests.empty and (forced.forecasts["model"] == "toy_last").all()
    # No residuals to calibrate on: the model's own +-1 interval is kept.
    assert ((forced.forecasts["yhat_upper"] - forced.forecasts["yhat"]) == 1.0).all()
    auto = run_forecast(linear(), cfg(models="auto", backtest_windows=0))
    assert (auto.forecasts["model"] == BASELINE).all() and len(auto.forecasts) == 10
