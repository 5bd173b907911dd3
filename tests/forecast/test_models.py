"""The contract every registered model keeps, and the registry."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from capacity_forecaster.errors import ForecastError, SchemaError
from capacity_forecaster.forecast.base import PREDICTION_COLUMNS, Model
from capacity_forecaster.forecast.registry import available_models, get_model, register_model

# Adapters that fit one library model per series in seconds: the contract runs them on fewer series.
HEAVY = {"autoets", "autoarima", "mstl", "prophet"}
HORIZON = 45


def daily_fleet(n_trending: int, days: int, seed: int = 0) -> pd.DataFrame:
    """Trend + weekly + noise series, plus a constant series and one with a 20-day NaN gap."""
    rng = np.random.default_rng(seed)
    ds = pd.date_range("2023-01-02", periods=days, freq="D")
    t = np.arange(days)
    weekday = ds.dayofweek.to_numpy()
    frames = []
    for i in range(n_trending):
        level = 20.0 + 5.0 * i + 0.02 * t + 8.0 * (weekday < 5) + rng.normal(0.0, 1.5, days)
        frames.append(pd.DataFrame({"server_id": f"s{i}", "metric": "cpu", "ds": ds, "value": level}))
    frames.append(pd.DataFrame({"server_id": "flat", "metric": "cpu", "ds": ds, "value": 42.0}))
    gappy = 30.0 + 6.0 * (weekday < 5) + rng.normal(0.0, 1.0, days)
    gappy[days // 2 : days // 2 + 20] = np.nan
    frames.append(pd.DataFrame({"server_id": "gappy", "metric": "memory", "ds": ds, "value": gappy}))
    return pd.concat(frames, ignore_index=True)


# Models that look their answers up in a stage input instead of training (``external``) have their
# own tests (test_models_amazon_forecast.py).
CONTRACT = [n for n in available_models() if getattr(get_model(n), "external", None) is None]


@pytest.fixture(scope="module")
def fleet() -> pd.DataFrame:
    """6 trending series x ~2.1 years (enough for yearly terms), a constant and a gappy one."""
    return daily_fleet(6, 770)


@pytest.fixture(scope="module")
def small_fleet() -> pd.DataFrame:
    """1 trending series x 12 weeks, a constant and a gappy one (for the slow adapters)."""
    return daily_fleet(1, 84)


def history_for(name: str, fleet: pd.DataFrame, small_fleet: pd.DataFrame) -> pd.DataFrame:
    return small_fleet if name in HEAVY else fleet


def check_predictions(pred: pd.DataFrame, history: pd.DataFrame, horizon: int, step: pd.Timedelta) -> None:
    assert list(pred.columns) == list(PREDICTION_COLUMNS)
    keys = history[["server_id", "metric"]].drop_duplicates()
    assert len(pred) == len(keys) * horizon
    assert pred[["yhat", "yhat_lower", "yhat_upper"]].notna().all().all()
    assert (pred["yhat_lower"] <= pred["yhat"]).all() and (pred["yhat"] <= pred["yhat_upper"]).all()
    assert pred[["yhat", "yhat_lower", "yhat_upper"]].stack().between(0.0, 100.0).all()
    last = history.groupby(["server_id", "metric"])["ds"].max()
    for (server, metric), group in pred.groupby(["server_id", "metric"]):
        expected = pd.date_range(last[(server, metric)] + step, periods=horizon, freq=step)
        assert (pd.DatetimeIndex(group["ds"]) == expected).all(), (server, metric)


@pytest.mark.parametrize("name", CONTRACT)
def test_contract_daily(name: str, fleet: pd.DataFrame, small_fleet: pd.DataFrame) -> None:
    history = history_for(name, fleet, small_fleet)
    before = history.copy()
    model = get_model(name)
    assert isinstance(model, Model)
    assert model.kind in ("local", "global") and model.min_history >= 1 and "D" in model.freqs
    pred = model.fit(history, freq="D").predict(HORIZON, level=80.0)
    pd.testing.assert_frame_equal(history, before)  # the input is not modified
    check_predictions(pred, history, HORIZON, pd.Timedelta(days=1))

    again = get_model(name).fit(history, freq="D").predict(HORIZON, level=80.0)
    pd.testing.assert_frame_equal(pred, again)  # deterministic
    restored = pickle.loads(pickle.dumps(model))
    pd.testing.assert_frame_equal(pred, restored.predict(HORIZON, level=80.0))  # picklable after fit

    flat = pred[pred["server_id"] == "flat"]
    assert np.allclose(flat["yhat"], 42.0, atol=0.5)


@pytest.mark.parametrize("name", CONTRACT)
def test_contract_hourly(name: str) -> None:
    model = get_model(name)
    rng = np.random.default_rng(1)
    ds = pd.date_range("2024-03-04", periods=24 * 14, freq="h")
    daily = 10.0 * np.sin(2 * np.pi * ds.hour.to_numpy() / 24.0)
    history = pd.concat(
        [
            pd.DataFrame({"server_id": s, "metric": "cpu", "ds": ds, "value": 40.0 + daily + rng.normal(0, 1, len(ds))})
            for s in ("a", "b")
        ],
        ignore_index=True,
    )
    if "h" not in model.freqs:
        with pytest.raises(ForecastError, match="does not support frequency 'h'"):
            model.fit(history, freq="h")
        return
    pred = model.fit(history, freq="h").predict(48, level=80.0)
    check_predictions(pred, history, 48, pd.Timedelta(hours=1))


@pytest.mark.parametrize("name", CONTRACT)
def test_too_short_or_empty_series_raise_forecast_error(name: str) -> None:
    model = get_model(name)
    ds = pd.date_range("2024-01-01", periods=max(model.min_history - 1, 1), freq="D")
    value = np.nan if model.min_history == 1 else 5.0  # the baseline takes any series with one known point
    short = pd.DataFrame({"server_id": "x", "metric": "cpu", "ds": ds, "value": value})
    with pytest.raises(ForecastError, match="x/cpu"):
        model.fit(short, freq="D")


def test_higher_level_gives_wider_intervals(fleet: pd.DataFrame) -> None:
    model = get_model("harmonic").fit(fleet)
    narrow, wide = model.predict(30, level=50.0), model.predict(30, level=95.0)
    assert ((wide["yhat_upper"] - wide["yhat_lower"]) >= (narrow["yhat_upper"] - narrow["yhat_lower"]) - 1e-9).all()


def test_bad_horizon_and_level_raise(fleet: pd.DataFrame) -> None:
    model = get_model("seasonal_naive").fit(fleet)
    with pytest.raises(ForecastError, match="horizon"):
        model.predict(0)
    with pytest.raises(ForecastError, match="level"):
        model.predict(10, level=100.0)
    with pytest.raises(ForecastError, match="before fit"):
        get_model("harmonic").predict(10)


def test_bad_history_frames_raise(fleet: pd.DataFrame) -> None:
    with pytest.raises(SchemaError, match="value"):
        get_model("seasonal_naive").fit(fleet.drop(columns="value"))
    with pytest.raises(ForecastError, match="duplicate"):
        get_model("seasonal_naive").fit(pd.concat([fleet, fleet.head(3)]))
    off_grid = fleet.assign(ds=fleet["ds"] + pd.to_timedelta(np.arange(len(fleet)) % 2, unit="h"))
    with pytest.raises(ForecastError, match="off the 'D' grid"):
        get_model("seasonal_naive").fit(off_grid)
    with pytest.raises(ForecastError, match="empty"):
        get_model("harmonic").fit(fleet.iloc[:0])


def test_registry_lists_valid_names_on_a_typo() -> None:
    names = available_models()
    assert {"seasonal_naive", "harmonic", "gbm_global", "autoets", "autoarima", "mstl", "prophet"} <= set(names)
    with pytest.raises(ForecastError, match="unknown model 'harmonik'.*harmonic.*seasonal_naive"):
        get_model("harmonik")


def test_registry_rejects_a_second_class_under_a_taken_name() -> None:
    available_models()

    class Impostor:
        pass

    with pytest.raises(ValueError, match="registered twice"):
        register_model("harmonic")(Impostor)


def test_model_parameters_pass_through_get_model() -> None:
    model = get_model("harmonic", yearly_order=3, damping=0.99)
    assert model.yearly_order == 3 and model.damping == 0.99  # type: ignore[attr-defined]


def test_prophet_leaves_the_callers_cmdstanpy_logger_as_it_found_it(small_fleet: pd.DataFrame) -> None:
    """helper-54: a fit switched cmdstanpy's logger off for good (a notebook lost its errors for the session)."""
    import logging

    one = small_fleet[small_fleet["server_id"] == small_fleet["server_id"].iloc[0]]
    logger = logging.getLogger("cmdstanpy")
    assert not logger.disabled
    get_model("prophet").fit(one, freq="D")
    assert not logger.disabled
