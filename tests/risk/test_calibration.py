"""Breach probabilities against backtests: outcomes, reliability, fitted correlation, isotonic map, live use."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from risk_frames import make_forecast, make_history
from scipy.special import ndtri

from capacity_forecaster.config import RiskConfig
from capacity_forecaster.risk.breach import assess_breaches, history_summary
from capacity_forecaster.risk.calibration import (
    BreachCalibration,
    calibrate_breaches,
    calibration_table,
    from_summary,
    horizon_probabilities,
    isotonic_knots,
    server_folds,
    window_outcomes,
)
from capacity_forecaster.risk.probability import reliability_table
from capacity_forecaster.schema import BACKTEST_FORECAST_COLUMNS, RISK_CALIBRATION_COLUMNS

Z80 = float(ndtri(0.9))
CUTOFF = pd.Timestamp("2025-01-01")


def path(server: str, metric: str, y: np.ndarray, yhat: np.ndarray, sigma: float | np.ndarray,
         cutoff: pd.Timestamp = CUTOFF) -> pd.DataFrame:
    """One backtest window: forecast ``yhat`` with an 80 % interval of a normal with sd ``sigma``."""
    half = Z80 * np.broadcast_to(np.asarray(sigma, dtype=float), yhat.shape)
    return pd.DataFrame({"server_id": server, "metric": metric, "model": "m", "cutoff": cutoff,
                         "ds": cutoff + pd.to_timedelta(np.arange(1, len(y) + 1), "D"), "y": y, "yhat": yhat,
                         "yhat_lower": yhat - half, "yhat_upper": yhat + half})[list(BACKTEST_FORECAST_COLUMNS)]


def simulated_backtests(rho: float, servers: int, days: int, seed: int, sigma: float = 4.0) -> pd.DataFrame:
    """Windows whose errors follow the one-factor copula with correlation ``rho`` (the model's own assumption).

    Each window's forecast sits ``u * sigma`` below the 80 % threshold (u varies between windows) and the
    actual is ``yhat + sigma * Z_t`` with ``Z_t = sqrt(rho) F + sqrt(1 - rho) e_t``: a probability model with
    the right rho is calibrated by construction.
    """
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(servers):
        for w in range(3):
            u = rng.uniform(0.5, 3.0)
            latent = np.sqrt(rho) * rng.standard_normal() + np.sqrt(1 - rho) * rng.standard_normal(days)
            yhat = np.full(days, 80.0 - u * sigma)
            frames.append(path(f"s{i:04d}", "cpu", yhat + sigma * latent, yhat, sigma,
                               CUTOFF + pd.Timedelta(days=30 * w)))
    return pd.concat(frames, ignore_index=True)


def no_flags() -> pd.DataFrame:
    return pd.DataFrame(columns=["server_id", "ds", "metric", "value"])


def test_a_calibrated_predictor_has_its_reliability_bins_on_the_diagonal() -> None:
    rng = np.random.default_rng(11)
    p = rng.uniform(0, 1, 40_000)
    table = reliability_table(pd.Series(p), pd.Series(rng.uniform(0, 1, p.size) < p), bins=10)
    assert len(table) == 10 and table["series"].sum() == p.size
    noise = np.sqrt(table["mean_probability"] * (1 - table["mean_probability"]) / table["series"])
    assert ((table["observed_frequency"] - table["mean_probability"]).abs() < 4 * noise + 1e-9).all()
    # Brier of a calibrated uniform predictor: E[p(1-p)] = 1/6.
    assert table.attrs["brier"] == pytest.approx(1 / 6, abs=0.005)


def test_an_overconfident_predictor_is_off_the_diagonal() -> None:
    rng = np.random.default_rng(12)
    truth = rng.uniform(0, 1, 20_000)
    said = np.where(truth > 0.5, 1.0, 0.0)  # claims certainty where the truth is a coin flip
    table = calibration_table(said, (rng.uniform(0, 1, truth.size) < truth).astype(float), 10, "raw")
    top = table[table["bin"] == "0.9-1.0"].iloc[0]
    assert top["mean_probability"] == 1.0 and top["observed_frequency"] == pytest.approx(0.75, abs=0.02)
    assert list(table.columns) == list(RISK_CALIBRATION_COLUMNS) and table["bin"].iloc[-1] == "all"
    assert table["windows"].iloc[-1] == truth.size == table["windows"].iloc[:-1].sum()


def test_window_outcomes_count_trusted_days_only() -> None:
    days = 10
    y = np.full(days, 70.0)
    y[3] = 85.0  # a real breach on day 4
    frames = [path("a", "cpu", y, np.full(days, 70.0), 3.0)]
    y2 = np.full(days, 70.0)
    y2[5] = 95.0  # above 80, but the ETL imputed that day: no evidence
    frames.append(path("b", "cpu", y2, np.full(days, 70.0), 3.0))
    frames.append(path("c", "disk", np.full(days, 85.0), np.full(days, 85.0), 3.0))  # disk threshold is 90
    paths = pd.concat(frames, ignore_index=True)
    flags = paths[["server_id", "metric", "ds"]].assign(is_imputed=False, is_anomaly=False)
    flags.loc[(flags["server_id"] == "b") & (flags["ds"] == CUTOFF + pd.Timedelta(days=6)), "is_imputed"] = True
    windows, scores = window_outcomes(paths, flags, RiskConfig(metric_thresholds={"disk": 90.0}))
    got = windows.set_index("server_id")
    assert got.loc["a", "breached"] and got.loc["a", "days_above"] == 1 and got.loc["a", "days"] == days
    assert not got.loc["b", "breached"] and got.loc["b", "days"] == days - 1
    assert not got.loc["c", "breached"]
    assert scores.shape == (3, days) and np.isinf(scores[1, -1])  # b's dropped day is padding


def test_backtest_probability_is_the_live_probability_of_the_same_forecast() -> None:
    yhat = np.linspace(70, 82, 30)
    fc = make_forecast("s1", "cpu", yhat, spread=6.0)
    live = assess_breaches(fc, history_summary(make_history(["s1"], metrics=("cpu",))), RiskConfig())
    bt = fc.assign(cutoff=fc["ds"].min() - pd.Timedelta(days=1), y=50.0)[list(BACKTEST_FORECAST_COLUMNS)]
    _, scores = window_outcomes(bt, no_flags(), RiskConfig())
    p = horizon_probabilities(scores, np.array([RiskConfig().error_correlation]))
    assert p[0, 0] == pytest.approx(live["breach_probability"].iloc[0], abs=1e-12)


def test_server_folds_keep_every_window_of_a_server_together() -> None:
    servers = pd.Series(["b", "a", "c", "a", "b", "d", "e", "f", "a"])
    folds = server_folds(servers, 3)
    assert pd.Series(folds).groupby(servers).nunique().eq(1).all()
    assert set(folds) == {0, 1, 2}


def test_isotonic_map_is_monotone_on_the_unit_interval() -> None:
    rng = np.random.default_rng(5)
    p = rng.uniform(0, 1, 3000)
    x, y = isotonic_knots(p, (rng.uniform(0, 1, p.size) < p**2).astype(float))
    assert x[0] == 0.0 and x[-1] == 1.0 and np.all(np.diff(x) >= 0) and np.all(np.diff(y) >= 0)
    assert 0.0 <= y.min() and y.max() <= 1.0
    assert np.interp(0.5, x, y) == pytest.approx(0.25, abs=0.07)  # it learnt p -> p^2


def test_right_correlation_is_calibrated_and_kept() -> None:
    paths = simulated_backtests(rho=0.9, servers=400, days=30, seed=1)
    cal = calibrate_breaches(paths, no_flags(), RiskConfig(isotonic_min_breaches=1_000_000))
    raw = cal.table[(cal.table["probability"] == "raw") & (cal.table["bin"] != "all")]
    assert cal.summary["breaches"] >= 100
    big = raw[raw["windows"] >= 50]
    noise = np.sqrt(big["mean_probability"] * (1 - big["mean_probability"]) / big["windows"])
    assert ((big["observed_frequency"] - big["mean_probability"]).abs() < 4 * noise + 0.02).all()
    assert abs(cal.summary["rho_fitted"] - 0.9) <= 0.1
    assert cal.method in ("none", "correlation") and abs(cal.rho - 0.9) <= 0.1


def test_wrong_correlation_is_fitted_from_the_backtests() -> None:
    paths = simulated_backtests(rho=0.3, servers=400, days=30, seed=2)
    cal = calibrate_breaches(paths, no_flags(), RiskConfig(error_correlation=0.9, isotonic_min_breaches=1_000_000))
    assert cal.method == "correlation" and abs(cal.rho - 0.3) <= 0.15
    assert cal.summary["brier_calibrated"] < cal.summary["brier_raw"]
    assert set(cal.table["probability"]) == {"raw", "calibrated"}
    assert "isotonic" in cal.reason and "not fitted" in cal.reason
    assert cal.settings(RiskConfig()).error_correlation == cal.rho


def test_too_few_breaches_keep_the_configured_model_and_say_why() -> None:
    days = 20
    paths = pd.concat([path(f"s{i}", "cpu", np.full(days, 40.0), np.full(days, 40.0), 3.0) for i in range(30)]
                      + [path("hot", "cpu", np.full(days, 90.0), np.full(days, 85.0), 3.0)], ignore_index=True)
    cal = calibrate_breaches(paths, no_flags(), RiskConfig())
    assert cal.method == "none" and cal.rho == RiskConfig().error_correlation and cal.knots is None
    assert "1 breach / 30 non-breach" in cal.reason and "calibration_min_breaches" in cal.reason
    assert set(cal.table["probability"]) == {"raw"}
    off = calibrate_breaches(simulated_backtests(0.3, 100, 20, 3), no_flags(), RiskConfig(calibrate=False))
    assert off.method == "none" and "risk.calibrate is false" in off.reason and off.summary["windows"] == 300
    none = calibrate_breaches(None, no_flags(), RiskConfig())
    assert none.method == "none" and none.table.empty and "no backtest forecasts" in none.reason


def test_isotonic_map_corrects_a_miscalibrated_spread() -> None:
    # Intervals twice too narrow: daily probabilities far too extreme; one-day windows so rho plays no part.
    rng = np.random.default_rng(4)
    n = 3000
    yhat = rng.uniform(60, 90, n)
    frames = path("x", "cpu", yhat + 8.0 * rng.standard_normal(n), yhat, 4.0)
    frames["server_id"] = [f"s{i:04d}" for i in range(n)]
    frames["ds"] = CUTOFF + pd.Timedelta(days=1)
    cal = calibrate_breaches(frames, no_flags(), RiskConfig())
    assert cal.method == "isotonic" and cal.knots is not None and cal.rho == RiskConfig().error_correlation
    assert cal.summary["brier_calibrated"] < cal.summary["brier_raw"]
    # A raw 1 % (forecast 2.3 sd of the too-narrow interval below) really breaches far more often.
    assert cal.apply(np.array([0.01]))[0] > 0.03
    again = from_summary(json.loads(json.dumps(cal.summary)), RiskConfig())  # as the run manifest stores it
    probe = np.array([0.0, 1e-4, 0.01, 0.5, 1.0])
    assert again.method == "isotonic" and np.array_equal(again.apply(probe), cal.apply(probe))


def test_a_map_changes_live_probabilities_and_levels_consistently() -> None:
    fc = make_forecast("s1", "cpu", np.full(90, 82.0), spread=4.0)  # above the threshold from day 1
    history = history_summary(make_history(["s1"], metrics=("cpu",)))
    raw = assess_breaches(fc, history, RiskConfig()).iloc[0]
    halve = BreachCalibration(0.9, (np.array([0.0, 1.0]), np.array([0.0, 0.5])), "isotonic")
    out = assess_breaches(fc, history, RiskConfig(), recalibrate=halve.apply).iloc[0]
    assert out["breach_probability"] == pytest.approx(raw["breach_probability"] / 2)
    # P >= likely_probability (0.5) is never reached any more: no "likely" date, level medium.
    assert raw["risk_level"] == "critical" and out["risk_level"] == "medium" and pd.isna(out["likely_breach_ds"])


def test_a_calibration_is_not_applied_to_series_without_a_backtest() -> None:
    """helper-64: idle fastStorage VMs with 8 days (no backtest: their forecast is extrapolation from day one) went
    from a breach probability of 0.19 to 0.54, critical, under a correlation and map fitted on backtested series."""
    cfg = RiskConfig()
    tested = make_forecast("tested", "cpu", np.full(30, 60.0), spread=15.0).assign(is_extrapolation=False)
    untested = make_forecast("new", "cpu", np.full(30, 60.0), spread=15.0).assign(is_extrapolation=True)
    forecasts = pd.concat([tested, untested], ignore_index=True)
    history = history_summary(make_history(["tested", "new"], days=60, level=60.0, metrics=("cpu",)))
    calibration = BreachCalibration(0.2, (np.array([0.0, 0.05, 1.0]), np.array([0.0, 0.5, 1.0])), "both", "fitted")
    raw = assess_breaches(forecasts, history, cfg).set_index("server_id")
    fitted = assess_breaches(forecasts, history, calibration.settings(cfg), recalibrate=calibration.apply,
                             untested_correlation=cfg.error_correlation).set_index("server_id")
    assert fitted.loc["new", "breach_probability"] == pytest.approx(raw.loc["new", "breach_probability"])
    assert fitted.loc["new", "sustained_breach_probability"] == pytest.approx(
        raw.loc["new", "sustained_breach_probability"])
    assert fitted.loc["tested", "breach_probability"] > raw.loc["tested", "breach_probability"] + 0.1
    # A row without the flag (a what-if's combined host) is no extrapolation.
    unknown = forecasts.assign(is_extrapolation=forecasts["is_extrapolation"].where(forecasts["server_id"] == "tested"))
    same = assess_breaches(unknown, history, calibration.settings(cfg), recalibrate=calibration.apply,
                           untested_correlation=cfg.error_correlation)
    assert same["breach_probability"].nunique() == 1
    # Without the flag (a lake written before it, or a caller that does not say) every series is calibrated alike.
    alike = assess_breaches(forecasts.drop(columns="is_extrapolation"), history, calibration.settings(cfg),
                            recalibrate=calibration.apply, untested_correlation=cfg.error_correlation)
    assert alike["breach_probability"].nunique() == 1
