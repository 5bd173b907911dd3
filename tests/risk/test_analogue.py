"""Seasonal analogue: last year's recurring peaks times growth, as a second opinion on risk."""

from __future__ import annotations

import numpy as np
import pandas as pd
from risk_frames import LAST_DAY, make_forecast, make_history, make_inventory

from capacity_forecaster.config import RiskConfig
from capacity_forecaster.risk.analogue import growth_ratio, seasonal_analogue
from capacity_forecaster.risk.breach import assess_breaches, history_summary
from capacity_forecaster.risk.seasonal import period_calendar, period_uplifts
from capacity_forecaster.risk.sizing import capacity_needs


def _year_end_history(growth_per_year: float) -> pd.DataFrame:
    days = 800
    ds = pd.date_range(end=LAST_DAY, periods=days)
    base = 40.0 * (1.0 + growth_per_year) ** (np.arange(days) / 364.0)
    december = period_calendar(ds, 3)["year_end"].to_numpy()
    values = np.where(december, base * 1.8, base)
    return make_history(["season"], days=days, metrics=("cpu",), values=values)


def test_growth_ratio_is_year_over_year() -> None:
    metrics = _year_end_history(0.2)
    ratio = growth_ratio(metrics[["server_id", "metric", "ds", "value"]])
    assert abs(ratio.loc[("season", "cpu")] - 1.2) < 0.01


def test_last_years_peak_grown_flags_a_year_end_breach_the_forecast_misses() -> None:
    metrics = _year_end_history(0.2)
    uplifts = period_uplifts(metrics, 3)
    # The model forecast keeps December at last year's level: peak 40 * 1.2 * 1.8 ~ 86 is missed.
    fc = make_forecast("season", "cpu", np.full(184, 50.0))
    cfg = RiskConfig()
    analogue = seasonal_analogue(metrics, fc, uplifts, cfg)
    row = analogue.iloc[0]
    assert row["analogue_period"] == "year-end" and row["analogue_days_above"] >= 3
    assert row["analogue_breach_ds"].month == 12 and row["analogue_peak"] > 80.0
    risk = assess_breaches(fc, history_summary(metrics), cfg, uplifts, analogue).iloc[0]
    assert pd.isna(risk["breach_ds"]) and risk["risk_level"] == "medium"
    assert "last year's year-end peaks grown" in risk["reason"]
    off = assess_breaches(fc, history_summary(metrics), cfg.model_copy(update={"analogue_min_days": 0}), uplifts,
                          analogue).iloc[0]
    assert off["risk_level"] == "low"


def test_no_growth_and_no_pattern_means_no_analogue_breach() -> None:
    metrics = _year_end_history(0.0)
    flat = make_history(["flat"], days=800, level=60.0, metrics=("cpu",))
    both = pd.concat([metrics, flat])
    fc = pd.concat([make_forecast("season", "cpu", np.full(184, 45.0)),
                    make_forecast("flat", "cpu", np.full(184, 60.0))])
    analogue = seasonal_analogue(both, fc, period_uplifts(both, 3), RiskConfig())
    assert "flat" not in set(analogue["server_id"])
    assert (analogue["analogue_days_above"] == 0).all()


JUNE_20 = pd.Timestamp("2026-06-20")


def _month_end_history(peak: float, days: int = 100, end: pd.Timestamp = JUNE_20) -> pd.DataFrame:
    """A month-end risk run: ``peak`` on the last 3 business days of each month, 20 % otherwise; under a year."""
    ds = pd.date_range(end=end, periods=days)
    month_end = period_calendar(ds, 3)["month_end"].to_numpy()
    return make_history(["batch"], days=days, metrics=("cpu",), end=end, values=np.where(month_end, peak, 20.0))


def test_a_month_end_batch_under_a_year_old_is_expected_at_the_next_month_end() -> None:
    """helper-37: 80 % on the last days of March, April and May; forecast flat at 22 % for June; rated low and
    right-sized, as if the month-end run had gone."""
    metrics = _month_end_history(92.0)
    uplifts = period_uplifts(metrics, 3)
    fc = make_forecast("batch", "cpu", np.full(30, 22.0), start=pd.Timestamp("2026-06-21"))
    cfg = RiskConfig()
    analogue = seasonal_analogue(metrics, fc, uplifts, cfg).iloc[0]
    assert analogue["analogue_peak"] == 92.0 and pd.isna(analogue["analogue_growth"])
    assert analogue["analogue_days_above"] == 3 and analogue["analogue_breach_ds"] == pd.Timestamp("2026-06-26")
    risk = assess_breaches(fc, history_summary(metrics), cfg, uplifts, seasonal_analogue(metrics, fc, uplifts, cfg))
    row = risk.iloc[0]
    assert row["risk_level"] == "medium" and "the month-end peaks of its last months" in row["reason"]
    # Short of the threshold it is not a risk, but it is said, and sizing keeps room for it.
    quiet = _month_end_history(70.0)
    lower = seasonal_analogue(quiet, fc, period_uplifts(quiet, 3), cfg)
    row = assess_breaches(fc, history_summary(quiet), cfg, period_uplifts(quiet, 3), lower).iloc[0]
    assert row["risk_level"] == "low" and "its recurring month-end peak reaches 70 %, above the forecast's" in \
        row["reason"]
    needs = capacity_needs(fc, make_inventory([{"server_id": "batch", "cpu_cores": 32}]), cfg, analogue=lower)
    assert needs.iloc[0]["cpu_peak_upper"] == 70.0  # not the forecast's 27 %: a right-size would cut the batch
    assert needs.iloc[0]["cpu_recurring"] and not needs.iloc[0]["memory_recurring"]
    assert capacity_needs(fc, make_inventory([{"server_id": "batch", "cpu_cores": 32}]), cfg).iloc[0][
        "cpu_peak_upper"] == 27.0


def test_one_month_end_is_not_a_pattern() -> None:
    metrics = _month_end_history(92.0, days=35)
    fc = make_forecast("batch", "cpu", np.full(30, 22.0), start=pd.Timestamp("2026-06-21"))
    assert seasonal_analogue(metrics, fc, period_uplifts(metrics, 3), RiskConfig()).empty


def test_a_right_size_keeps_the_cores_a_month_end_run_needs_and_says_why() -> None:
    from capacity_forecaster.risk.stage import run_risk

    metrics = pd.concat([_month_end_history(70.0), make_history(["batch"], days=100, level=10.0,
                                                                metrics=("memory",), end=JUNE_20)])
    forecasts = pd.concat([make_forecast("batch", "cpu", np.full(30, 22.0), start=pd.Timestamp("2026-06-21")),
                           make_forecast("batch", "memory", np.full(30, 10.0), start=pd.Timestamp("2026-06-21"))])
    inventory = make_inventory([{"server_id": "batch", "cpu_cores": 32, "memory_gb": 128}])
    rec = run_risk(metrics, forecasts, inventory, RiskConfig()).recommendations.iloc[0]
    assert rec["recommended_cpu_cores"] == 32  # 70 % at month-end: no smaller size keeps 80 % with headroom
    assert "peaks sized for: 70 % cpu (its recurring period-end peak) / 15 % memory" in rec["rationale"]


def test_a_growth_what_if_grows_the_month_end_peak_too() -> None:
    """helper-39: at +50 % the forecast grew and the month-end analogue stayed at 70 %: the what-if missed it."""
    from capacity_forecaster.risk.stage import run_risk

    metrics = _month_end_history(70.0)
    forecasts = make_forecast("batch", "cpu", np.full(30, 22.0), start=pd.Timestamp("2026-06-21"))
    inventory = make_inventory([{"server_id": "batch", "cpu_cores": 32}])
    cfg = RiskConfig(growth_ramp=False)
    result = run_risk(metrics, forecasts, inventory, cfg, growth=50.0)
    base, grown = result.server_risk.iloc[0], result.scenario.server_risk.iloc[0]
    assert (base["analogue_peak"], base["risk_level"]) == (70.0, "low")
    assert (grown["analogue_peak"], grown["risk_level"]) == (100.0, "medium")  # 70 x 1.5, clipped at 100
    assert grown["analogue_days_above"] == 3
