"""Breach dates, days to breach, levels and the no-answer statuses, on hand-built forecasts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from risk_frames import LAST_DAY, make_forecast, make_history

from capacity_forecaster.config import RiskConfig
from capacity_forecaster.risk.breach import assess_breaches, history_summary
from capacity_forecaster.risk.current import current_state, mark_stale
from capacity_forecaster.schema import SERVER_RISK_COLUMNS


def _assess(forecasts: pd.DataFrame, metrics: pd.DataFrame, cfg: RiskConfig | None = None) -> pd.DataFrame:
    cfg = cfg or RiskConfig()
    return assess_breaches(forecasts, history_summary(metrics), cfg, current=current_state(metrics, cfg))


def test_crossing_on_the_17th_forecast_day_says_17() -> None:
    y = np.where(np.arange(60) >= 16, 90.0, 50.0)
    out = _assess(make_forecast("a", "cpu", y), make_history(["a"], metrics=("cpu",)))
    row = out.iloc[0]
    assert row["days_to_breach"] == 17
    assert row["breach_ds"] == LAST_DAY + pd.Timedelta(days=17)
    assert row["peak_yhat"] == 90.0 and row["peak_ds"] == row["breach_ds"]
    assert row["risk_level"] == "critical"
    assert row["breach_probability"] > 0.99
    assert list(out.columns[: len(SERVER_RISK_COLUMNS)]) == list(SERVER_RISK_COLUMNS)


def test_counts_from_the_last_observed_day_not_the_first_forecast_day() -> None:
    y = np.where(np.arange(30) >= 4, 90.0, 50.0)
    late = make_forecast("a", "cpu", y, start=LAST_DAY + pd.Timedelta(days=11))
    out = _assess(late, make_history(["a"], metrics=("cpu",)))
    assert out.iloc[0]["days_to_breach"] == 15


def test_never_crossing_gives_null_breach_and_low_level() -> None:
    out = _assess(make_forecast("a", "cpu", np.full(90, 40.0)), make_history(["a"], metrics=("cpu",)))
    row = out.iloc[0]
    assert pd.isna(row["breach_ds"]) and pd.isna(row["days_to_breach"]) and pd.isna(row["breach_upper_ds"])
    assert row["risk_level"] == "low"
    assert row["breach_probability"] < 1e-6
    assert "below 80 %" in row["reason"]


@pytest.mark.parametrize(("day", "level"), [(10, "critical"), (60, "high"), (150, "medium")])
def test_level_follows_the_day_of_a_likely_breach(day: int, level: str) -> None:
    y = np.where(np.arange(180) >= day - 1, 95.0, 40.0)
    out = _assess(make_forecast("a", "cpu", y), make_history(["a"], metrics=("cpu",)))
    assert out.iloc[0]["risk_level"] == level
    assert out.iloc[0]["days_to_breach"] == day


def test_upper_bound_crossing_alone_is_reported_and_priced_by_probability() -> None:
    y = np.full(90, 74.0)
    out = _assess(make_forecast("a", "cpu", y, spread=8.0), make_history(["a"], metrics=("cpu",)))
    row = out.iloc[0]
    assert pd.isna(row["breach_ds"]) and row["days_to_upper_breach"] == 1
    assert 0.3 <= row["breach_probability"] < 0.5 and pd.isna(row["likely_breach_ds"])
    assert row["risk_level"] == "medium"


def test_per_metric_threshold_override() -> None:
    y = np.full(30, 85.0)
    frames = pd.concat([make_forecast("a", "cpu", y), make_forecast("a", "disk", y)])
    cfg = RiskConfig(metric_thresholds={"disk": 90.0})
    out = _assess(frames, make_history(["a"], metrics=("cpu", "disk")), cfg).set_index("metric")
    assert out.loc["cpu", "days_to_breach"] == 1 and out.loc["cpu", "threshold"] == 80.0
    assert pd.isna(out.loc["disk", "breach_ds"]) and out.loc["disk", "threshold"] == 90.0


def test_short_history_and_missing_forecast_get_a_level_and_a_reason() -> None:
    metrics = pd.concat([make_history(["short"], days=20, metrics=("cpu",)),
                         make_history(["noforecast"], metrics=("cpu",))])
    out = _assess(make_forecast("short", "cpu", np.full(30, 95.0)), metrics).set_index("server_id")
    assert out.loc["short", "status"] == "short_history"
    assert out.loc["short", "risk_level"] == "critical" and out.loc["short", "breach_probability"] > 0.99
    assert "only 20 observed days" in out.loc["short", "reason"] and "few or no backtests" in out.loc["short", "reason"]
    assert out.loc["noforecast", "status"] == "no_forecast" and out.loc["noforecast", "risk_level"] == "low"
    assert "no forecast" in out.loc["noforecast", "reason"] and "120 observed days" in out.loc["noforecast", "reason"]


def test_only_a_series_without_any_observed_value_has_a_null_level() -> None:
    metrics = pd.concat([make_history(["short"], days=20, metrics=("cpu", "memory")),
                         make_history(["ok"], metrics=("cpu",))])
    forecasts = pd.concat([make_forecast("short", "cpu", np.full(30, 95.0)),
                           make_forecast("ok", "cpu", np.full(30, 50.0)),
                           make_forecast("ghost", "cpu", np.full(30, 85.0))])  # a forecast without any history
    out = _assess(forecasts, metrics)
    known = out["status"] != "no_data"
    assert set(out.loc[known, "risk_level"]) <= {"critical", "high", "medium", "low"}
    assert out.loc[~known, "risk_level"].isna().all() and out.loc[~known, "breach_probability"].isna().all()
    assert (out["reason"].str.len() > 0).all()
    ghost = out.set_index("server_id").loc["ghost"]
    assert ghost["status"] == "no_data" and "no observed value" in ghost["reason"]
    assert set(out["status"]) == {"short_history", "no_forecast", "assessed", "no_data"}


def test_imputed_days_do_not_count_as_history() -> None:
    metrics = make_history(["a"], days=100, metrics=("cpu",))
    metrics.loc[metrics.index[:50], "is_imputed"] = True
    cfg = RiskConfig(min_history_days=60)
    out = _assess(make_forecast("a", "cpu", np.full(10, 40.0)), metrics, cfg)
    assert out.iloc[0]["status"] == "short_history" and out.iloc[0]["history_days"] == 50


def _over_last(days_over: int, *, days: int = 120, level: float = 40.0, value: float = 95.0) -> np.ndarray:
    values = np.full(days, level)
    values[days - days_over:] = value
    return values


@pytest.mark.parametrize("history_days", [10, 31, 120])
def test_a_series_over_its_threshold_now_is_already_breaching_whatever_its_forecast(history_days: int) -> None:
    metrics = make_history(["hot"], days=history_days, metrics=("cpu",), values=_over_last(5, days=history_days))
    out = _assess(make_forecast("hot", "cpu", np.full(30, 40.0)), metrics).iloc[0]
    assert out["status"] == "already_breaching" and out["risk_level"] == "high"
    assert out["days_over_recent"] == 5 and out["days_over_30d"] == 5 and out["days_over_90d"] == 5
    assert out["last_over_ds"] == LAST_DAY and pd.isna(out["forecast_breach_ds"])  # the forecast stays below
    assert out["breach_ds"] == LAST_DAY and out["days_to_breach"] == 0  # over now: breaches now
    assert "over 80 % on 5 of the last 14 observed days" in out["reason"] and "already breaching" in out["reason"]
    assert ("only 10 observed days" in out["reason"]) == (history_days == 10)
    # The day counts never claim a window longer than the history.
    said = {10: "(5 of all 10 observed days; last", 31: "(5 of the last 30 days, 5 of all 31 observed days; last",
            120: "(5 of the last 30 days, 5 of the last 90; last"}
    assert said[history_days] in out["reason"]


def test_already_breaching_keeps_a_higher_forecast_level_and_needs_no_forecast() -> None:
    metrics = make_history(["a", "b"], metrics=("cpu",), values=_over_last(3))
    out = _assess(make_forecast("a", "cpu", np.full(30, 95.0)), metrics).set_index("server_id")
    assert out.loc["a", "risk_level"] == "critical" and out.loc["a", "status"] == "already_breaching"
    assert out.loc["b", "risk_level"] == "high" and out.loc["b", "status"] == "already_breaching"
    assert "no forecast" not in out.loc["b", "reason"] or "already breaching" in out.loc["b", "reason"]


def test_the_recent_window_counts_observed_days_only_and_follows_the_config() -> None:
    values = np.r_[_over_last(3)[:-1], 40.0]  # over on 2 days, then back under on the last day
    metrics = make_history(["a"], metrics=("cpu",), values=values)
    forecast = make_forecast("a", "cpu", np.full(30, 40.0))
    assert _assess(forecast, metrics).iloc[0]["status"] == "assessed"
    assert _assess(forecast, metrics, RiskConfig(current_min_days_over=2)).iloc[0]["status"] == "already_breaching"
    # Over on 3 days, but the most recent of them imputed: 2 observed days over, not breaching.
    hot = make_history(["a"], metrics=("cpu",), values=_over_last(3))
    hot.loc[hot.index[-1], "is_imputed"] = True
    row = _assess(forecast, hot, RiskConfig(current_last_days=0)).iloc[0]
    assert row["status"] == "assessed" and row["days_over_recent"] == 2


def test_a_series_over_on_its_last_observed_day_runs_over_now() -> None:
    """A quarter-end peak on the last observed day: already breaching by default, not with the rule off."""
    metrics = make_history(["peak"], metrics=("cpu",), values=_over_last(1))
    forecast = make_forecast("peak", "cpu", np.full(30, 40.0))
    row = _assess(forecast, metrics).iloc[0]
    assert row["status"] == "already_breaching" and row["risk_level"] == "high" and row["days_over_recent"] == 1
    assert _assess(forecast, metrics, RiskConfig(current_last_days=0)).iloc[0]["status"] == "assessed"
    two = make_history(["peak"], metrics=("cpu",), values=np.r_[_over_last(2)[:-2], 95.0, 40.0])
    assert _assess(forecast, two, RiskConfig(current_last_days=2)).iloc[0]["status"] == "assessed"


def test_current_state_of_an_empty_or_all_imputed_history() -> None:
    metrics = make_history(["a"], days=30, metrics=("cpu",))
    metrics["is_imputed"] = True
    assert current_state(metrics, RiskConfig()).empty
    out = _assess(make_forecast("a", "cpu", np.full(10, 90.0)), metrics).iloc[0]
    assert out["status"] == "no_data" and out["risk_level"] is None


def test_probability_grows_with_the_forecast_level() -> None:
    metrics = make_history(["a"], metrics=("cpu",))
    probs = [_assess(make_forecast("a", "cpu", np.full(60, level)), metrics).iloc[0]["breach_probability"]
             for level in (60.0, 70.0, 75.0, 78.0, 82.0)]
    assert probs == sorted(probs) and probs[-1] > 0.9


def test_a_saturated_series_says_its_real_need_is_unknown() -> None:
    """Bitbrains VM 407 runs at 100 % (raw 101-129 %): the ETL clips and flags it; a new size is a minimum."""
    metrics = make_history(["sat", "hot"], metrics=("cpu",), values=_over_last(5))
    sat = metrics["server_id"] == "sat"
    last3 = metrics["ds"] > metrics["ds"].max() - pd.Timedelta(days=3)
    metrics["is_saturated"] = sat & (metrics["value"] > 80) & last3
    metrics.loc[metrics["is_saturated"], "value"] = 100.0
    state = current_state(metrics, RiskConfig()).set_index("server_id")
    assert state.loc["sat", "days_saturated_recent"] == 3 and state.loc["hot", "days_saturated_recent"] == 0
    out = _assess(make_forecast("sat", "cpu", np.full(30, 100.0)), metrics).set_index("server_id")
    assert "saturated (demand above capacity) on 3 of them" in out.loc["sat", "reason"]
    assert "saturated" not in out.loc["hot", "reason"]
    # Without the column (a lake written before issue 10) nothing is saturated.
    assert (current_state(metrics.drop(columns="is_saturated"), RiskConfig())["days_saturated_recent"] == 0).all()



def test_an_anomalous_saturated_day_of_an_idle_series_is_not_saturation() -> None:
    """An idle fastStorage VM's one anomalous 100 % day made every size of it "a minimum" (helper-44); on a
    series already breaching, every saturated day counts."""
    metrics = make_history(["idle", "hot"], metrics=("cpu",), level=2.0)
    spike = metrics["ds"] == metrics["ds"].max() - pd.Timedelta(days=4)
    metrics["is_saturated"] = spike
    metrics["is_anomaly"] = spike & (metrics["server_id"] == "idle")
    metrics.loc[spike, "value"] = 100.0
    hot = (metrics["server_id"] == "hot") & (metrics["ds"] > metrics["ds"].max() - pd.Timedelta(days=3))
    metrics.loc[hot, "value"] = 95.0
    state = current_state(metrics, RiskConfig()).set_index("server_id")
    assert state.loc["idle", "days_saturated_recent"] == 0 and not state.loc["idle", "already_breaching"]
    assert state.loc["hot", "days_saturated_recent"] == 1 and state.loc["hot", "already_breaching"]
    metrics["is_anomaly"] = spike  # anomalous or not, a breaching series' saturated day is its need
    assert current_state(metrics, RiskConfig()).set_index("server_id").loc["hot", "days_saturated_recent"] == 1

def test_a_long_gap_inside_the_recent_days_is_said_and_a_thin_return_is_stale() -> None:
    """fastStorage VMs 626 and 636: saturated until 27 August, then one 5-minute sample on the last day of the
    trace. Over on 13 of their last 14 observed days, they read as breaching now; their data had stopped."""
    def gapped(after: int) -> pd.DataFrame:
        values = np.r_[np.full(90, 40.0), np.full(30 - after, 100.0), np.full(after, 10.0)]
        metrics = make_history(["gap", "steady"], metrics=("cpu",), values=values)
        silent = (metrics["server_id"] == "gap") & metrics["ds"].between(
            LAST_DAY - pd.Timedelta(days=14 + after), LAST_DAY - pd.Timedelta(days=after))
        return metrics[~silent]

    cfg = RiskConfig()
    forecast = make_forecast("gap", "cpu", np.full(30, 100.0))
    thin = gapped(1)
    state = current_state(thin, cfg).set_index("server_id")
    assert state.loc["gap", "recent_gap_days"] == 15 and state.loc["gap", "recent_gap_resumed"] == LAST_DAY
    assert state.loc["gap", "days_after_gap"] == 1
    assert state.loc["steady", "recent_gap_days"] == 0 and pd.isna(state.loc["steady", "recent_gap_resumed"])
    assessed = _assess(forecast, thin)
    assert assessed.set_index("server_id").loc["gap", "status"] == "already_breaching"  # 13 of 14 observed days
    out = mark_stale(assessed, cfg).set_index("server_id")
    stopped = LAST_DAY - pd.Timedelta(days=16)
    assert out.loc["gap", "status"] == "stale" and out.loc["gap", "stale_since"] == stopped
    assert out.loc["gap", "reason"].startswith(f"cpu: no data after {stopped.date()} until {LAST_DAY.date()}, then "
                                               "only 1 day: check its monitoring")
    assert out.loc["steady", "status"] == "already_breaching" and pd.isna(out.loc["steady", "stale_since"])
    # helper-53: no longer "0 days" with a breach date before its last day; the forecast's own crossing, as counted
    gap = out.loc["gap"]
    assert gap["breach_ds"] == gap["forecast_breach_ds"] and gap["days_to_breach"] == 1  # the day after its last
    assert out.loc["steady", "days_to_breach"] == 0
    # Back for 3 days (enough to say something current): still breaching, and the reason says there was a gap.
    back = mark_stale(_assess(forecast, gapped(3)), cfg).set_index("server_id").loc["gap"]
    assert back["status"] == "already_breaching" and back["reason"].endswith(
        f"no data for 15 days before {(LAST_DAY - pd.Timedelta(days=2)).date()}, so its recent days reach back "
        "before the gap: check its monitoring")
    # A gap shorter than stale_after_days (a long weekend) is neither; 0 turns both off.
    for off in (RiskConfig(stale_after_days=16), RiskConfig(stale_after_days=0)):
        row = mark_stale(_assess(forecast, thin, off), off).set_index("server_id").loc["gap"]
        assert row["status"] == "already_breaching" and "no data" not in row["reason"]
