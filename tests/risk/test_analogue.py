"""Seasonal analogue: last year's recurring peaks times growth, as a second opinion on risk."""

from __future__ import annotations

import numpy as np
import pandas as pd
from risk_frames import LAST_DAY, make_forecast, make_history

from capacity_forecaster.config import RiskConfig
from capacity_forecaster.risk.analogue import growth_ratio, seasonal_analogue
from capacity_forecaster.risk.breach import assess_breaches, history_summary
from capacity_forecaster.risk.seasonal import period_calendar, period_uplifts


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
