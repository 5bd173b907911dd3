"""Period-end windows, recurring uplifts and the naming of peaks in rationales."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from risk_frames import LAST_DAY, make_forecast, make_history

from capacity_forecaster.config import RiskConfig
from capacity_forecaster.risk.breach import assess_breaches, history_summary
from capacity_forecaster.risk.seasonal import (
    MIN_PERIODS,
    month_ends_covered,
    name_periods,
    period_calendar,
    period_uplifts,
)


def test_period_calendar_flags_the_last_business_days() -> None:
    cal = period_calendar(pd.date_range("2026-09-24", "2026-10-02"), business_days=3)
    quarter_end = cal.index[cal["quarter_end"]].strftime("%Y-%m-%d").tolist()
    assert quarter_end == ["2026-09-28", "2026-09-29", "2026-09-30"]
    assert cal.loc["2026-09-30", "period"] == "quarter-end"
    assert not cal.loc["2026-10-01", "month_end"]
    december = period_calendar(pd.Series(pd.to_datetime(["2026-12-31", "2026-12-15", "2026-12-25"])), 3)
    assert december["period"].tolist() == ["year-end", "", "year-end"]  # 25 December is a holiday


def _batch_history(days: int = 400, spike: float = 30.0) -> pd.DataFrame:
    metrics = make_history(["batch"], days=days, level=20.0, metrics=("cpu",))
    flags = period_calendar(metrics["ds"], 3).reindex(pd.DatetimeIndex(metrics["ds"]))
    metrics.loc[flags["month_end"].to_numpy(), "value"] += spike
    return metrics


def test_uplifts_measure_the_pattern_and_ignore_flat_series() -> None:
    metrics = pd.concat([_batch_history(), make_history(["flat"], days=400, level=20.0, metrics=("cpu",))])
    uplifts = period_uplifts(metrics, 3).set_index("server_id")
    assert uplifts.loc["batch", "month_end_uplift"] > 1.0
    assert abs(uplifts.loc["flat", "month_end_uplift"]) < 1e-9
    assert abs(uplifts.loc["flat", "year_end_uplift"]) < 1e-9


def test_one_month_end_is_no_recurring_pattern() -> None:
    """30 days with one busy month-end (a fastStorage VM) is no 'batch/month-end'; two month-ends are."""
    one = _batch_history(days=30)
    two = _batch_history(days=60)
    assert one["ds"].dt.month.nunique() == 1 and one["ds"].max().is_month_end  # June with its month-end
    assert period_uplifts(one, 3)["month_end_uplift"].iloc[0] == 0.0
    assert period_uplifts(two, 3)["month_end_uplift"].iloc[0] > 1.0



def test_a_switch_that_fell_on_one_month_end_is_no_recurring_pattern() -> None:
    """helper-46's vendor export: a VM idle for two months jumped to 90 % in the last days of the third, and its
    cluster read "batch/month-end"; the uplift is at most the lower median of the months' own uplifts."""
    switch = make_history(["switch"], days=92, level=2.0, metrics=("cpu",))
    flags = period_calendar(switch["ds"], 3).reindex(pd.DatetimeIndex(switch["ds"]))
    last_month = switch["ds"].dt.to_period("M") == switch["ds"].max().to_period("M")
    switch.loc[last_month.to_numpy() & flags["month_end"].to_numpy(), "value"] = 90.0
    assert switch["ds"].dt.month.nunique() >= 3
    assert period_uplifts(switch, 3)["month_end_uplift"].iloc[0] == 0.0
    # A batch that lifts every month-end keeps its uplift, an uneven one its smaller months'.
    assert period_uplifts(_batch_history(days=92), 3)["month_end_uplift"].iloc[0] == pytest.approx(1.5)

def test_a_day_is_named_only_when_its_series_has_the_pattern() -> None:
    days = pd.Series(pd.to_datetime(["2026-09-30", "2026-09-30", "2026-09-15"]))
    uplifts = pd.DataFrame({"month_end_uplift": [1.2, 0.0, 1.2], "quarter_end_uplift": [1.0, 0.0, 1.0],
                            "year_end_uplift": [0.0, 0.0, 0.0]})
    assert name_periods(days, uplifts, 3, 0.15).tolist() == ["quarter-end", "", ""]


def test_rationale_names_the_quarter_end_crossing() -> None:
    metrics = _batch_history()
    start = LAST_DAY + pd.Timedelta(days=1)
    ds = pd.date_range(start, periods=120)
    flags = period_calendar(ds, 3)
    y = np.where(flags["quarter_end"].to_numpy(), 88.0, np.where(flags["month_end"].to_numpy(), 70.0, 25.0))
    out = assess_breaches(make_forecast("batch", "cpu", y), history_summary(metrics), RiskConfig(),
                          period_uplifts(metrics, 3)).iloc[0]
    assert out["breach_ds"] == pd.Timestamp("2026-09-28")
    assert out["seasonal_peak"] == "quarter-end"
    assert "crosses 80 % at quarter-end 2026-09-28 (day 90)" in out["reason"]


def test_month_ends_covered_counts_as_the_uplift_does() -> None:
    # fastStorage up to 2013-09-03: August's month-end only (September's first days are not in its window).
    assert month_ends_covered("2013-08-12", "2013-09-03", 3) == 1
    # Rnd July and August: two, so a month-end uplift can be measured (MIN_PERIODS).
    assert month_ends_covered("2013-07-01", "2013-08-31", 3) == 2 == MIN_PERIODS
    # A history that starts inside a month-end window has none of that month's other days: it does not count.
    assert month_ends_covered("2013-08-29", "2013-09-30", 3) == 1
    history = make_history(["a"], days=23, end=pd.Timestamp("2013-09-03"), metrics=("cpu",))
    assert (period_uplifts(history, 3)["month_end_uplift"] == 0).all()
